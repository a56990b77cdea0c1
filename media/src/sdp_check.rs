//! A quick look at an SDP offer before str0m negotiates it, so that a client gets a precise
//! error ("no codec we forward") instead of an answer with every m-line rejected.

use crate::error::MediaError;

/// Codecs the SFU forwards. Anything else would need transcoding, which it never does.
const FORWARDED_CODECS: [&str; 3] = ["opus", "vp8", "h264"];

/// Checks that the offer is SDP and has at least one active audio or video section with a
/// codec we forward. Returns whether audio and video sections were found. Other sections
/// (a viewer's m=application for the `captions` data channel) are left to str0m.
pub fn check_offer(sdp: &str) -> Result<OfferMedia, MediaError> {
    let sdp = sdp.trim_start();
    if !sdp.starts_with("v=0") {
        return Err(MediaError::InvalidSdp(
            "an SDP offer starts with \"v=0\"".to_string(),
        ));
    }
    let mut found = OfferMedia::default();
    let mut any_media = false;
    let mut section: Option<(Section, bool)> = None; // (kind, port != 0)
    let mut section_ok = false;
    let close = |s: Option<(Section, bool)>, ok: bool, found: &mut OfferMedia| {
        if let Some((kind, active)) = s
            && active
            && ok
        {
            match kind {
                Section::Audio => found.audio = true,
                Section::Video => found.video = true,
                Section::Other => {}
            }
        }
    };
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(m) = line.strip_prefix("m=") {
            close(section.take(), section_ok, &mut found);
            any_media = true;
            section_ok = false;
            let parts: Vec<&str> = m.split_whitespace().collect();
            let [media, port, _proto, _fmt, ..] = parts[..] else {
                return Err(MediaError::InvalidSdp(format!(
                    "malformed media line \"m={m}\": expected \"m=<media> <port> <proto> <fmt> ...\""
                )));
            };
            let Ok(port) = port.split('/').next().unwrap_or("").parse::<u16>() else {
                return Err(MediaError::InvalidSdp(format!(
                    "malformed media line \"m={m}\": the port is not a number"
                )));
            };
            let kind = match media {
                "audio" => Section::Audio,
                "video" => Section::Video,
                _ => Section::Other,
            };
            let port_active = port != 0;
            section = Some((kind, port_active));
        } else if let Some(rtpmap) = line.strip_prefix("a=rtpmap:") {
            let codec = rtpmap
                .split_whitespace()
                .nth(1)
                .and_then(|enc| enc.split('/').next())
                .unwrap_or("");
            if FORWARDED_CODECS
                .iter()
                .any(|c| c.eq_ignore_ascii_case(codec))
            {
                section_ok = true;
            }
        }
    }
    close(section.take(), section_ok, &mut found);
    if !any_media {
        return Err(MediaError::InvalidSdp(
            "the offer has no media section (m=)".to_string(),
        ));
    }
    if !found.audio && !found.video {
        return Err(MediaError::NoSupportedCodec);
    }
    Ok(found)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OfferMedia {
    pub audio: bool,
    pub video: bool,
}

#[derive(Clone, Copy)]
enum Section {
    Audio,
    Video,
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

    #[test]
    fn audio_and_video() {
        let sdp = format!(
            "{HEAD}m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n"
        );
        assert_eq!(
            check_offer(&sdp).unwrap(),
            OfferMedia {
                audio: true,
                video: true
            }
        );
    }

    #[test]
    fn audio_only() {
        let sdp = format!("{HEAD}m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n");
        assert_eq!(
            check_offer(&sdp).unwrap(),
            OfferMedia {
                audio: true,
                video: false
            }
        );
    }

    /// A WHEP player that wants captions adds a data channel section (browser form, then the
    /// pre-RFC 8841 form); it is not media, so it neither counts nor gets in the way.
    #[test]
    fn data_channel_section_is_accepted_beside_media() {
        for app in [
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n",
            "m=application 9 DTLS/SCTP 5000\r\na=sctpmap:5000 webrtc-datachannel 1024\r\n",
        ] {
            let sdp = format!(
                "{HEAD}m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n{app}m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n"
            );
            assert_eq!(
                check_offer(&sdp).unwrap(),
                OfferMedia {
                    audio: true,
                    video: true
                }
            );
        }
    }

    #[test]
    fn data_channel_alone_is_not_media() {
        let sdp = format!("{HEAD}m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n");
        assert!(matches!(
            check_offer(&sdp),
            Err(MediaError::NoSupportedCodec)
        ));
    }

    #[test]
    fn unsupported_codecs_only() {
        let sdp = format!(
            "{HEAD}m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\nm=video 9 UDP/TLS/RTP/SAVPF 98\r\na=rtpmap:98 VP9/90000\r\n"
        );
        assert!(matches!(
            check_offer(&sdp),
            Err(MediaError::NoSupportedCodec)
        ));
    }

    #[test]
    fn rejected_section_does_not_count() {
        let sdp = format!("{HEAD}m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n");
        assert!(matches!(
            check_offer(&sdp),
            Err(MediaError::NoSupportedCodec)
        ));
    }

    #[test]
    fn garbage_is_invalid() {
        assert!(matches!(
            check_offer("hello"),
            Err(MediaError::InvalidSdp(_))
        ));
        assert!(matches!(check_offer(HEAD), Err(MediaError::InvalidSdp(_))));
        assert!(matches!(check_offer(""), Err(MediaError::InvalidSdp(_))));
        let banana = format!("{HEAD}m=video banana\r\n");
        assert!(matches!(
            check_offer(&banana),
            Err(MediaError::InvalidSdp(_))
        ));
        let port =
            format!("{HEAD}m=audio x UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n");
        assert!(matches!(check_offer(&port), Err(MediaError::InvalidSdp(_))));
    }
}
