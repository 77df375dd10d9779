//! The match rate a report stands on: a clean room sees an exposed person's purchases
//! only when the media record and the retail record were linked.

use jingteng_engine::ViewInfo;
use serde::{Deserialize, Serialize};

use crate::release::Sources;

/// How many of the media party's and the retailer's records the match linked.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Coverage {
    /// Records of the media party (its identity table).
    pub media_records: u64,
    /// Records of the retailer.
    pub retail_records: u64,
    /// People linked at both.
    pub matched: u64,
    /// `matched / media_records`.
    #[serde(deserialize_with = "crate::nan_if_null")]
    pub media_match_rate: f64,
    /// `matched / retail_records`.
    #[serde(deserialize_with = "crate::nan_if_null")]
    pub retail_match_rate: f64,
    /// What the rate means for the figures, in one sentence.
    pub caveat: String,
}

impl Coverage {
    /// From the match report of the view.
    pub fn from_view(info: &ViewInfo, sources: &Sources) -> Self {
        let r = &info.report;
        let media_records = r.records.get(&sources.media).copied().unwrap_or(0);
        let retail_records = r.records.get(&sources.retail).copied().unwrap_or(0);
        let key = r
            .parties
            .iter()
            .filter(|p| **p == sources.media || **p == sources.retail)
            .cloned()
            .collect::<Vec<_>>()
            .join("+");
        let matched = r.overlap.get(&key).map_or(0, |o| o.matched);
        let rate = |n: u64| {
            if n == 0 {
                0.0
            } else {
                matched as f64 / n as f64
            }
        };
        let media_match_rate = rate(media_records);
        let retail_match_rate = rate(retail_records);
        let caveat = format!(
            "stands on {matched} people linked between {} ({:.1}% of its {media_records} users) and {} ({:.1}% of its {retail_records} members): exposed people who bought but were not linked are invisible, so attributed conversions, GMV and ROAS are lower bounds, and lift is measured on linked people only",
            sources.media,
            100.0 * media_match_rate,
            sources.retail,
            100.0 * retail_match_rate,
        );
        Self {
            media_records,
            retail_records,
            matched,
            media_match_rate,
            retail_match_rate,
            caveat,
        }
    }
}
