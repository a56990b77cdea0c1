//! Who watches a session (`GET /api/sessions/{id}/viewers`, served by `api::viewers`),
//! grouped by hub, with each group's link quality from the viewers' RTCP receiver reports,
//! and whether the floor feed and a remote speaker are being published. The moderator page
//! shows the groups; the room page plays sound only while a remote speaker is live. Link
//! quality in words ([`quality`]) is also a metric label.

use std::collections::{BTreeMap, HashMap};

use media::{PeerId, ViewerLink};
use serde::Serialize;

use crate::media_engine::Media;
use crate::peer_resources::SessionPeers;

/// Loss at or above which a link is "fair", then "poor" (the watch page uses the same words).
const FAIR_LOSS: f32 = 0.01;
const POOR_LOSS: f32 = 0.05;

#[derive(Debug, Serialize)]
pub struct Audience {
    pub session: String,
    pub viewers: usize,
    pub floor_live: bool,
    pub speaker_live: bool,
    /// The speaker's camera replaces the floor feed's picture (its video is negotiated).
    pub speaker_video: bool,
    pub hubs: Vec<HubRow>,
}

#[derive(Debug, PartialEq, Serialize)]
pub struct HubRow {
    /// `None`: people watching on their own.
    pub hub: Option<String>,
    pub viewers: usize,
    /// Viewers that have sent a receiver report yet.
    pub reporting: usize,
    pub worst_loss_pct: Option<f32>,
    pub worst_rtt_ms: Option<u32>,
    /// good / fair / poor from the worst loss; unknown before the first report.
    pub link: &'static str,
}

/// The report for a session, from its peers in the node's index and the engine's statistics
/// as they are now.
pub fn report(peers: &SessionPeers, media: &Media) -> Audience {
    let session = peers.session();
    let viewers = peers.viewers();
    let (links, counts) = match media.engine() {
        Some(engine) => {
            let stats = engine.stats();
            let media_session = session.to_media();
            let counts = stats
                .sessions()
                .into_iter()
                .find(|(s, _)| *s == media_session)
                .map(|(_, c)| c)
                .unwrap_or_default();
            (stats.viewer_links(), counts)
        }
        None => (HashMap::new(), Default::default()),
    };
    Audience {
        session: session.to_string(),
        viewers: viewers.len(),
        floor_live: counts.floor_publishers > 0,
        speaker_live: counts.speaker_publishers > 0,
        speaker_video: counts.speaker_publishers > 0 && counts.speaker_video,
        hubs: by_hub(&viewers, &links),
    }
}

/// Groups viewers by hub (hubs by name, individuals last) with the worst link in each group:
/// one bad link at a hub is what its operator needs to hear about.
pub fn by_hub(
    viewers: &[(PeerId, Option<String>)],
    links: &HashMap<PeerId, ViewerLink>,
) -> Vec<HubRow> {
    let mut groups: BTreeMap<(bool, Option<&str>), HubRow> = BTreeMap::new();
    for (peer, hub) in viewers {
        let key = (hub.is_none(), hub.as_deref());
        let row = groups.entry(key).or_insert_with(|| HubRow {
            hub: hub.clone(),
            viewers: 0,
            reporting: 0,
            worst_loss_pct: None,
            worst_rtt_ms: None,
            link: "unknown",
        });
        row.viewers += 1;
        if let Some(link) = links.get(peer) {
            row.reporting += 1;
            let pct = link.loss * 100.0;
            row.worst_loss_pct = Some(row.worst_loss_pct.map_or(pct, |w| w.max(pct)));
            if let Some(rtt) = link.rtt_ms {
                row.worst_rtt_ms = Some(row.worst_rtt_ms.map_or(rtt, |w| w.max(rtt)));
            }
            row.link = quality(row.worst_loss_pct.unwrap_or(0.0) / 100.0);
        }
    }
    groups.into_values().collect()
}

pub(crate) fn quality(loss: f32) -> &'static str {
    if loss >= POOR_LOSS {
        "poor"
    } else if loss >= FAIR_LOSS {
        "fair"
    } else {
        "good"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(loss: f32, rtt: u32) -> ViewerLink {
        ViewerLink {
            loss,
            rtt_ms: Some(rtt),
            jitter_s: None,
        }
    }

    #[test]
    fn groups_by_hub_with_the_worst_link_and_individuals_last() {
        let viewers = vec![
            (PeerId(1), None),
            (PeerId(2), Some("Nairobi".to_owned())),
            (PeerId(3), Some("Dakar".to_owned())),
            (PeerId(4), Some("Dakar".to_owned())),
            (PeerId(5), Some("Dakar".to_owned())),
        ];
        let links = HashMap::from([
            (PeerId(1), link(0.0, 20)),
            (PeerId(3), link(0.002, 40)),
            (PeerId(4), link(0.08, 300)),
        ]);
        let rows = by_hub(&viewers, &links);
        let names: Vec<_> = rows.iter().map(|r| r.hub.as_deref()).collect();
        assert_eq!(names, vec![Some("Dakar"), Some("Nairobi"), None]);
        let dakar = &rows[0];
        assert_eq!((dakar.viewers, dakar.reporting), (3, 2));
        assert_eq!(dakar.link, "poor");
        assert!((dakar.worst_loss_pct.unwrap() - 8.0).abs() < 1e-4);
        assert_eq!(dakar.worst_rtt_ms, Some(300));
        assert_eq!((rows[1].link, rows[1].worst_loss_pct), ("unknown", None));
        assert_eq!((rows[2].viewers, rows[2].link), (1, "good"));
    }

    #[test]
    fn link_words_follow_the_loss_thresholds() {
        assert_eq!(quality(0.0), "good");
        assert_eq!(quality(0.0099), "good");
        assert_eq!(quality(0.01), "fair");
        assert_eq!(quality(0.0499), "fair");
        assert_eq!(quality(0.05), "poor");
    }
}
