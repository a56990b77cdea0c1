//! A small WAV reader for test clips: RIFF/WAVE, PCM 16-bit, any channel count (mixed to
//! mono). Enough for the reference corpora the tests and benches use; not a general decoder.

use std::path::Path;

/// Larger files are refused rather than read whole into memory.
const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

const FORMAT_PCM: u16 = 1;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("cannot read wav file: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a RIFF/WAVE file")]
    NotWave,
    #[error("malformed wav: {0}")]
    Malformed(&'static str),
    #[error("unsupported wav: {0}")]
    Unsupported(String),
    #[error("wav file is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge,
}

struct Format {
    channels: u16,
    rate: u32,
}

/// Reads a PCM16 WAV file and returns its sample rate and samples, mixed down to mono by
/// averaging the channels of each frame.
pub fn read_pcm16_mono(path: impl AsRef<Path>) -> Result<(u32, Vec<i16>), WavError> {
    let path = path.as_ref();
    if std::fs::metadata(path)?.len() > MAX_FILE_BYTES {
        return Err(WavError::TooLarge);
    }
    parse_pcm16_mono(&std::fs::read(path)?)
}

/// [`read_pcm16_mono`] on bytes already in memory.
pub fn parse_pcm16_mono(bytes: &[u8]) -> Result<(u32, Vec<i16>), WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWave);
    }
    let mut format = None;
    let mut rest = &bytes[12..];
    while rest.len() >= 8 {
        let id = &rest[0..4];
        let declared = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let body = &rest[8..];
        // Streaming writers leave the data size at 0 or u32::MAX: take what the file holds.
        let len = declared.min(body.len());
        let chunk = &body[..len];
        match id {
            b"fmt " => format = Some(parse_format(chunk)?),
            b"data" => {
                let format = format.ok_or(WavError::Malformed("data chunk before fmt chunk"))?;
                return Ok((format.rate, mix_to_mono(chunk, format.channels)));
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        let advance = len.saturating_add(len & 1).min(body.len());
        rest = &body[advance..];
    }
    Err(WavError::Malformed("no data chunk"))
}

fn parse_format(chunk: &[u8]) -> Result<Format, WavError> {
    if chunk.len() < 16 {
        return Err(WavError::Malformed("fmt chunk shorter than 16 bytes"));
    }
    let u16_at = |i: usize| u16::from_le_bytes([chunk[i], chunk[i + 1]]);
    let mut tag = u16_at(0);
    let channels = u16_at(2);
    let rate = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
    let bits = u16_at(14);
    if tag == FORMAT_EXTENSIBLE {
        // WAVEFORMATEXTENSIBLE: the real format tag opens the sub-format GUID at byte 24.
        if chunk.len() < 26 {
            return Err(WavError::Malformed("extensible fmt chunk too short"));
        }
        tag = u16_at(24);
    }
    if tag != FORMAT_PCM {
        return Err(WavError::Unsupported(format!("format tag {tag}, want PCM")));
    }
    if bits != 16 {
        return Err(WavError::Unsupported(format!(
            "{bits} bits per sample, want 16"
        )));
    }
    if channels == 0 || rate == 0 {
        return Err(WavError::Malformed("zero channels or sample rate"));
    }
    Ok(Format { channels, rate })
}

fn mix_to_mono(data: &[u8], channels: u16) -> Vec<i16> {
    let frame_bytes = 2 * usize::from(channels);
    data.chunks_exact(frame_bytes)
        .map(|frame| {
            let sum: i32 = frame
                .chunks_exact(2)
                .map(|s| i32::from(i16::from_le_bytes([s[0], s[1]])))
                .sum();
            // The mean of i16 values fits in i16.
            (sum / i32::from(channels)) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(format_tag: u16, channels: u16, rate: u32, bits: u16, samples: &[i16]) -> Vec<u8> {
        let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVE");
        // An odd-sized chunk the reader must skip with its pad byte.
        out.extend_from_slice(b"LIST");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&[1, 2, 3, 0]);
        out.extend_from_slice(b"fmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&format_tag.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        let block = channels * bits / 8;
        out.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
        out.extend_from_slice(&block.to_le_bytes());
        out.extend_from_slice(&bits.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&data);
        out
    }

    #[test]
    fn reads_mono_pcm16() {
        let bytes = wav(1, 1, 16_000, 16, &[0, 1, -1, i16::MAX, i16::MIN]);
        let (rate, samples) = parse_pcm16_mono(&bytes).expect("valid wav");
        assert_eq!(rate, 16_000);
        assert_eq!(samples, [0, 1, -1, i16::MAX, i16::MIN]);
    }

    #[test]
    fn mixes_stereo_to_mono() {
        let bytes = wav(
            1,
            2,
            48_000,
            16,
            &[100, 300, -100, -300, i16::MAX, i16::MAX],
        );
        let (rate, samples) = parse_pcm16_mono(&bytes).expect("valid wav");
        assert_eq!(rate, 48_000);
        assert_eq!(samples, [200, -200, i16::MAX]);
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert!(matches!(
            parse_pcm16_mono(b"RIFX...."),
            Err(WavError::NotWave)
        ));
        assert!(matches!(
            parse_pcm16_mono(&wav(3, 1, 16_000, 32, &[0, 0])),
            Err(WavError::Unsupported(_))
        ));
        assert!(matches!(
            parse_pcm16_mono(&wav(1, 1, 16_000, 8, &[0])),
            Err(WavError::Unsupported(_))
        ));
        let mut no_data = wav(1, 1, 16_000, 16, &[1, 2]);
        no_data.truncate(no_data.len() - 12);
        assert!(matches!(
            parse_pcm16_mono(&no_data),
            Err(WavError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_input_never_panics() {
        let bytes = wav(1, 2, 16_000, 16, &[1, 2, 3, 4, 5, 6]);
        for len in 0..bytes.len() {
            let _ = parse_pcm16_mono(&bytes[..len]);
        }
    }

    #[test]
    fn reads_a_librivox_clip_when_installed() {
        let path = "/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0880.wav";
        if !Path::new(path).exists() {
            return;
        }
        let (rate, samples) = read_pcm16_mono(path).expect("clip is PCM16");
        assert_eq!(rate, 16_000);
        // The data chunk declares 0x175c0 bytes.
        assert_eq!(samples.len(), 0x175c0 / 2);
    }
}
