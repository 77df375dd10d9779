//! Real-time bidding decisions (RTA): "should I bid for this user, for this campaign?"
//!
//! On each ad request the media platform sends the campaign id and the user's device id
//! hashed as Tencent Ads does for device uploads (lower- or upper-case hex MD5 of the
//! canonical form, see `jingteng_psi::normalize`). The node answers from memory:
//!
//! - [`RtaIndex`]: the immutable index of active audiences, built from lists of
//!   [`CampaignList`] (campaign → tiers of members, each tier with a bid multiplier) and
//!   a suppression list (opt-outs and deletions) that always wins: a suppressed user is
//!   not even kept in memory. Users are sorted 16-byte MD5s with a bucket directory on
//!   their leading bits; memberships are one `u32` each (campaign, tier). Answers are
//!   serialised once, at build time.
//! - [`LiveIndex`]: the index being served, swapped atomically on refresh (readers clone
//!   an `Arc` of a whole [`Snapshot`], never see a half-built one), with an immediate
//!   [`LiveIndex::forget`] for opt-outs that arrive between two builds.
//! - [`serve`]: `GET /v1/rta?campaign=C123&device_md5=<32 hex>` →
//!   `{"bid":true,"multiplier":1.5}` or `{"bid":false,"multiplier":0}`; malformed
//!   queries are `400 application/problem+json`, an unknown campaign is `404`. A small
//!   HTTP/1.1 keep-alive server over `httparse` that allocates nothing per request.
//! - [`bench`]: `jingteng bench rta` and `examples/rta_bench.rs`: a synthetic index of
//!   N users, its build time and memory, in-process lookups, and `wrk` over loopback.
//! - [`RtaKey`]: in networked mode the media party's secret key, and the device tokens
//!   (`HMAC-SHA256(key, md5)[..16]`) its ad server sends instead of the MD5, so that
//!   the advertiser's node answers without learning who its users are.
//!
//! The design and the measured figures are in `docs/audiences.md` ("RTA").

pub mod bench;
mod http;
mod index;
mod live;
mod token;

pub use http::{IDLE_TIMEOUT, MAX_CONNECTIONS, MAX_HEAD, MAX_HEADERS, serve};
pub use index::{
    CampaignList, Decision, DeviceMd5, IndexStats, MAX_CAMPAIGNS, MAX_MULTIPLIER, MAX_TIERS,
    RtaIndex, Tier,
};
pub use live::{LiveIndex, Snapshot};
pub use token::{RTA_KEY_LEN, RtaKey};

/// Errors of building and serving an RTA index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A campaign id that is empty, too long or has characters other than letters,
    /// digits and `.` `_` `~` `-` (ids travel in URLs unencoded).
    #[error("campaign id {0:?} is not 1–64 letters, digits, '.', '_', '~' or '-'")]
    CampaignId(String),
    /// The same campaign id twice in one build.
    #[error("campaign {0:?} is listed twice")]
    DuplicateCampaign(String),
    /// A multiplier that is not a finite number in (0, [`MAX_MULTIPLIER`]].
    #[error("campaign {campaign:?}: bid multiplier {multiplier} is not in (0, {max}]", max = MAX_MULTIPLIER)]
    Multiplier {
        /// The campaign.
        campaign: String,
        /// The multiplier given.
        multiplier: f64,
    },
    /// More tiers in a campaign than [`MAX_TIERS`].
    #[error("campaign {campaign:?} has {tiers} tiers; at most {max} are allowed", max = MAX_TIERS)]
    TooManyTiers {
        /// The campaign.
        campaign: String,
        /// Tiers given.
        tiers: usize,
    },
    /// More campaigns than [`MAX_CAMPAIGNS`], or more memberships than a `u32` counts.
    #[error("index too large: {0}")]
    TooLarge(String),
    /// Network or process I/O (serving, running `wrk`).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A benchmark whose own checks failed (a bug, or a broken tool).
    #[error("benchmark: {0}")]
    Bench(String),
}

/// Result of this module's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
