//! Where the JWT secret comes from: the config (file, env or flag), else the file
//! `data_dir/jwt_secret`, which `--dev` creates once (mode 0600) so that later runs and
//! `floorcast token` from the same folder share it.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{Config, MIN_JWT_SECRET_LEN};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "no JWT secret: set jwt_secret (floorcast.toml, FLOORCAST_JWT_SECRET or --jwt-secret), \
         or run `floorcast --dev` once to generate {0}"
    )]
    Missing(PathBuf),
    #[error("could not read the JWT secret file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not write the JWT secret file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the JWT secret in {0} is shorter than {MIN_JWT_SECRET_LEN} bytes; delete it to regenerate"
    )]
    TooShort(PathBuf),
}

/// The secret to use. With `generate` (dev mode) a missing file is created.
pub fn resolve(config: &Config, generate: bool) -> Result<String, SecretError> {
    if let Some(secret) = &config.jwt_secret {
        return Ok(secret.clone());
    }
    let path = config.secret_file();
    match read(&path)? {
        Some(secret) => Ok(secret),
        None if generate => create(&path),
        None => Err(SecretError::Missing(path)),
    }
}

fn read(path: &Path) -> Result<Option<String>, SecretError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let secret = text.trim().to_owned();
            if secret.len() < MIN_JWT_SECRET_LEN {
                return Err(SecretError::TooShort(path.to_owned()));
            }
            Ok(Some(secret))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SecretError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn create(path: &Path) -> Result<String, SecretError> {
    use rand::RngCore;
    let write_err = |source| SecretError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write_err)?;
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();

    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Anyone who can read it can mint operator tokens.
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(format!("{secret}\n").as_bytes())
                .map_err(write_err)?;
            tracing::info!(path = %path.display(), "generated a new JWT secret");
            Ok(secret)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read(path)?.ok_or_else(|| SecretError::Missing(path.to_owned()))
        }
        Err(e) => Err(write_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        assert!(matches!(
            resolve(&config, false),
            Err(SecretError::Missing(_))
        ));
        let first = resolve(&config, true).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(resolve(&config, true).unwrap(), first);
        assert_eq!(resolve(&config, false).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(config.secret_file())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let explicit = Config {
            jwt_secret: Some("x".repeat(40)),
            ..config
        };
        assert_eq!(resolve(&explicit, false).unwrap(), "x".repeat(40));
    }
}
