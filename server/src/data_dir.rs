//! The data directory is private to the node's user: the directory is 0700 and every file
//! in it 0600. It holds the JWT secret (whoever reads it mints operator tokens) and the
//! database (tokens' holders, hands, the floor log, captions).
//!
//! [`prepare`] runs before anything opens a file there. It creates the directory 0700, or
//! tightens an existing one, tightens every regular file directly in it (each fix is logged
//! with the old mode), and creates the database file 0600 if it is missing: SQLite creates its
//! `-wal` and `-shm` files with the database's own permissions, so they are 0600 too. The
//! process umask is left alone (it would also change files the node writes elsewhere).

use std::path::{Path, PathBuf};

/// Mode of the data directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files in it.
pub const FILE_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
#[error("data directory {path}: {source}")]
pub struct DataDirError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// A permission tightened by [`prepare`]: the path and its mode before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixed {
    pub path: PathBuf,
    pub was: u32,
}

/// Creates or tightens `dir`, its files, and creates `database` (a path in `dir`) 0600 when
/// it does not exist. Returns what it had to tighten (also logged as warnings).
pub fn prepare(dir: &Path, database: &Path) -> Result<Vec<Fixed>, DataDirError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| DataDirError { path, source }
    };
    let mut fixed = Vec::new();
    create_private_dir(dir).map_err(err(dir))?;
    let mut tighten_or_warn = |path: &Path, mode: u32| match tighten(path, mode) {
        Ok(f) => {
            fixed.extend(f);
            Ok(())
        }
        // Not ours (a volume root owned by root with an fsGroup, say): say so, carry on.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            tracing::warn!(
                path = %path.display(),
                error = %e,
                "cannot make this private (not its owner); others may read the node's data"
            );
            Ok(())
        }
        Err(e) => Err(err(path)(e)),
    };
    tighten_or_warn(dir, DIR_MODE)?;
    for entry in std::fs::read_dir(dir).map_err(err(dir))? {
        let path = entry.map_err(err(dir))?.path();
        // Regular files only, not what a symlink points to (it may be outside the directory).
        let meta = std::fs::symlink_metadata(&path).map_err(err(&path))?;
        if meta.file_type().is_file() {
            tighten_or_warn(&path, FILE_MODE)?;
        }
    }
    create_private_file(database).map_err(err(database))?;
    for f in &fixed {
        tracing::warn!(
            path = %f.path.display(),
            was = %format_args!("{:04o}", f.was),
            "tightened the permissions of the data directory: it holds the JWT secret and the database"
        );
    }
    Ok(fixed)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

/// Sets `mode` when group or others have any access; `Some(old mode)` when it did.
#[cfg(unix)]
fn tighten(path: &Path, mode: u32) -> std::io::Result<Option<Fixed>> {
    use std::os::unix::fs::PermissionsExt;
    let was = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if was & 0o077 == 0 {
        return Ok(None);
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(Some(Fixed {
        path: path.to_owned(),
        was,
    }))
}

#[cfg(unix)]
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    // An empty file is a valid empty SQLite database.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other.map(drop),
    }
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(not(unix))]
fn tighten(_: &Path, _: u32) -> std::io::Result<Option<Fixed>> {
    Ok(None)
}

#[cfg(not(unix))]
fn create_private_file(_: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn fresh_directory_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/data");
        let db = dir.join("floorcast.db");
        assert_eq!(prepare(&dir, &db).unwrap(), vec![]);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
    }

    #[test]
    fn loose_permissions_are_tightened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let db = dir.join("floorcast.db");
        let secret = dir.join("jwt_secret");
        let private = dir.join("already-private");
        for (p, m) in [(&db, 0o644), (&secret, 0o666), (&private, 0o600)] {
            std::fs::write(p, b"x").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        }
        // A symlink to a file outside is not followed.
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"x").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();

        let mut fixed = prepare(&dir, &db).unwrap();
        fixed.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(
            fixed,
            vec![
                Fixed {
                    path: dir.clone(),
                    was: 0o755
                },
                Fixed {
                    path: db.clone(),
                    was: 0o644
                },
                Fixed {
                    path: secret.clone(),
                    was: 0o666
                },
            ]
        );
        assert_eq!(mode(&dir), 0o700);
        for p in [&db, &secret, &private] {
            assert_eq!(mode(p), 0o600, "{}", p.display());
        }
        assert_eq!(mode(&outside), 0o644);
        assert_eq!(std::fs::read(&db).unwrap(), b"x", "contents untouched");
        assert_eq!(prepare(&dir, &db).unwrap(), vec![], "nothing left to fix");
    }
}
