//! Closed-loop measurement for Jingteng: did the ads on the media party sell the brand
//! at the retailer, and how much of that would not have happened anyway?
//!
//! Every figure is computed in two steps. Trusted code (this crate) builds a derived
//! table over the raw joined view with a DataFusion plan — one row per attributed order,
//! or one row per person and campaign of the holdout — and registers it with
//! [`jingteng_engine::Engine::register_derived`]; then every figure that leaves is an
//! aggregate over that table asked through [`jingteng_engine::Engine::query`], so it
//! passes the same privacy check and release (threshold or differential privacy,
//! budget, audit log) as an analyst's SQL. Nothing here reads a released value that
//! did not go through the engine's release.
//!
//! - [`attribution`]: last touch (default: 7-day click window, 1-day view window,
//!   click preferred, 8 orders per person), first touch, linear; conversions, GMV, CVR,
//!   CPA, ROAS per campaign and breakdowns.
//! - [`lift`]: test and control groups of the randomised holdout, ITT difference,
//!   relative lift, incremental conversions and GMV, iROAS, with 95% intervals that
//!   include the noise of a DP release.
//! - [`program`]: program metrics per month across campaigns and brands (spend,
//!   impressions, campaigns, CVR, month-on-month change, re-investment rate), with
//!   the attribution settings' version.
//! - [`reach`]: reach per media party, de-duplicated across them through the match,
//!   incremental reach per partner, frequency histogram capped at 10+.
//! - [`Measure`]: one measurement as a value, run locally or sent to the host.
//! - [`stats`]: the interval and sample-size mathematics, with no I/O.
//! - [`bench`]: the attribution benchmark's plain-DataFusion side and its check.
//! - [`simulate`]: how often the lift intervals cover the true effect, over simulated
//!   studies released through an in-memory engine.

mod attribution;
pub mod bench;
mod coverage;
mod lift;
mod program;
mod reach;
mod release;
mod request;
pub mod simulate;
pub mod stats;

/// Attribution of retail orders to media exposures.
pub use attribution::{
    ATTRIBUTED, AttributionReport, AttributionSettings, Breakdown, BreakdownRow,
    CampaignAttribution, Dimension, Model, attribute, register_attributed,
};
/// What part of the people a report can see.
pub use coverage::Coverage;
/// Incremental lift from the randomised holdout.
pub use lift::{
    CampaignLift, GroupFigures, LIFT_OUTCOMES, LiftReport, LiftSettings, lift,
    register_lift_outcomes,
};
/// Program metrics across campaigns and brands.
pub use program::{MonthChange, MonthFigures, PROGRAM, ProgramReport, program, register_program};
/// Reach and frequency across media parties.
pub use reach::{
    CampaignReach, FREQUENCY_BUCKETS, FrequencyBucket, PartyReach, REACH, ReachCoverage,
    ReachReport, media_parties, reach, register_reach, release_reach,
};
/// How each released figure was released.
pub use release::{CampaignId, Released, Sources};
/// A measurement as a value, run locally or at the host.
pub use request::{Measure, Report};

/// The longest window or tail, in days, a setting may ask for.
pub const MAX_DAYS: i64 = 365;
/// The largest time-zone offset a setting may give, in seconds either way of UTC.
pub const MAX_UTC_OFFSET_S: i64 = 14 * 3_600;

/// Errors of measurement.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The engine refused or failed a query (privacy rule, budget, resource limit…).
    #[error(transparent)]
    Engine(#[from] jingteng_engine::Error),
    /// A setting or argument is wrong.
    #[error("{0}")]
    Input(String),
    /// A bug.
    #[error("internal error in measurement (this is a bug): {0}")]
    Internal(String),
}

impl From<jingteng_engine::datafusion::error::DataFusionError> for Error {
    fn from(e: jingteng_engine::datafusion::error::DataFusionError) -> Self {
        Self::Engine(jingteng_engine::Error::DataFusion(e))
    }
}

/// Result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reads a figure that JSON wrote as `null` because it was not finite (`serde_json`
/// writes NaN and ±∞ as `null`, e.g. a ratio over a noisy zero) back as NaN, so that a
/// report always crosses the wire between nodes.
pub(crate) fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
}

#[cfg(test)]
mod wire_tests {
    #![allow(clippy::unwrap_used)]

    use crate::stats::Interval;

    /// A relative lift over a noisy zero is not finite: JSON carries it as `null` and
    /// it comes back as NaN instead of failing the whole report.
    #[test]
    fn figures_that_are_not_finite_cross_the_wire() {
        let i = Interval {
            estimate: f64::NAN,
            low: f64::NEG_INFINITY,
            high: 1.5,
        };
        let text = serde_json::to_string(&i).unwrap();
        assert_eq!(text, r#"{"estimate":null,"low":null,"high":1.5}"#);
        let back: Interval = serde_json::from_str(&text).unwrap();
        assert!(back.estimate.is_nan() && back.low.is_nan());
        assert_eq!(back.high, 1.5);
    }
}
