//! Incremental lift from the randomised holdout.
//!
//! Every eligible person of a campaign was randomised into test (may be exposed) and
//! control (never exposed). A person converts when they bought the campaign's brand
//! from its first day 00:00 until the end of the 7th day after its last day (the
//! settings' time zone) — the same definition as `truth.json`. Only people linked to
//! the retailer can be seen to convert, so both groups are restricted to them (the
//! randomisation does not depend on the match, so the comparison stays fair).
//!
//! Intention to treat (ITT): everyone assigned, exposed or not. Estimators and
//! intervals are in [`crate::stats`]; in DP mode the released counts carry discrete
//! Laplace noise of a known scale `b`, and its variance (2b²) is added to the sampling
//! variance. Value (incremental GMV, iROAS) gets a parametric bootstrap interval
//! ([`stats::value_bootstrap`]) from the released count, sum and sum of squares of the
//! per-person GMV of each group, with fresh draws of the DP noise at the released
//! scales.

use jingteng_engine::policy::{ColumnRule, Role};
use jingteng_engine::{Engine, ViewInfo};
use serde::{Deserialize, Serialize};

use crate::coverage::Coverage;
use crate::release::{CampaignId, Released, Sources, ask, float, int, text};
use crate::stats::{self, Interval, Proportion, ValueMoments};
use crate::{Error, MAX_DAYS, MAX_UTC_OFFSET_S, Result};

/// The derived table of holdout outcomes.
pub const LIFT_OUTCOMES: &str = "measure.lift_outcomes";

/// How conversions are counted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LiftSettings {
    /// Days after the campaign's last day in which orders still count (7).
    pub tail_days: i64,
    /// Time zone of the campaign's dates, seconds east of UTC (+08:00).
    pub utc_offset_s: i64,
    /// Confidence of the intervals (0.95).
    #[serde(deserialize_with = "crate::nan_if_null")]
    pub confidence: f64,
    /// Bootstrap replicates of the value interval (2,000).
    pub bootstrap_draws: u32,
    /// Seed of the bootstrap (each campaign's draws are seeded from it and the
    /// campaign id, so a report is reproducible).
    pub bootstrap_seed: u64,
}

impl Default for LiftSettings {
    fn default() -> Self {
        Self {
            tail_days: 7,
            utc_offset_s: 8 * 3_600,
            confidence: 0.95,
            bootstrap_draws: 2_000,
            bootstrap_seed: 0x6a69_6e67_7465_6e67,
        }
    }
}

/// The holdout outcomes over the raw view: `person, campaign_id, grp, converted,
/// value_fen`.
fn outcomes_sql(s: &LiftSettings, src: &Sources) -> String {
    // Campaign days are dimensions, so text in every view: CAST(… AS DATE) reads them.
    let (holdout, users, campaigns, orders) = (
        src.t(true, "holdout"),
        src.t(false, "users"),
        src.t(true, "campaigns"),
        src.t(false, "orders"),
    );
    let (tail, off) = (s.tail_days, s.utc_offset_s);
    format!(
        "WITH c AS (
            SELECT campaign_id, brand,
                   CAST(CAST(CAST(start_date AS DATE) AS INT) AS BIGINT) * 86400 - {off} AS from_s,
                   (CAST(CAST(CAST(end_date AS DATE) AS INT) AS BIGINT) + 1 + {tail}) * 86400 - {off} AS to_s
            FROM {campaigns}
        ),
        o AS (SELECT person, brand, to_unixtime(ts) AS s, amount_fen FROM {orders}),
        h AS (
            SELECT h.person, h.campaign_id, h.grp, c.brand, c.from_s, c.to_s
            FROM {holdout} h
            JOIN {users} r ON h.person = r.person
            JOIN c ON h.campaign_id = c.campaign_id
        )
        SELECT h.person, h.campaign_id, h.grp,
               CAST(MAX(CASE WHEN o.person IS NULL THEN 0 ELSE 1 END) AS BIGINT) AS converted,
               CAST(COALESCE(SUM(o.amount_fen), 0) AS BIGINT) AS value_fen
        FROM h LEFT JOIN o
          ON o.person = h.person AND o.brand = h.brand AND o.s >= h.from_s AND o.s < h.to_s
        GROUP BY h.person, h.campaign_id, h.grp"
    )
}

/// Registers `measure.lift_outcomes`: one row per (linked person, campaign) of the
/// holdout with `grp`, `converted` (0/1), `value_fen` (the brand's GMV in the window)
/// and `value_sq` (its square, in units of [`LiftReport::value_sq_unit_fen`] fen).
pub async fn register_lift_outcomes(
    engine: &mut Engine,
    settings: &LiftSettings,
    sources: &Sources,
) -> Result<()> {
    settings.check()?;
    register_outcomes_from(engine, &outcomes_sql(settings, sources), sources).await
}

impl LiftSettings {
    fn check(&self) -> Result<()> {
        let valid = (0..=MAX_DAYS).contains(&self.tail_days)
            && self.confidence > 0.0
            && self.confidence < 1.0
            && (100..=100_000).contains(&self.bootstrap_draws)
            && self.utc_offset_s.abs() <= MAX_UTC_OFFSET_S;
        if !valid {
            return Err(Error::Input(format!(
                "lift settings: tail {} days (0 to {MAX_DAYS}), confidence {} (between 0 and 1), {} bootstrap draws (100 to 100,000), UTC offset {} s (at most 14 h either way)",
                self.tail_days, self.confidence, self.bootstrap_draws, self.utc_offset_s
            )));
        }
        Ok(())
    }
}

/// The per-person value's bounds at the retailer (`amount_fen`'s, applied by a DP
/// release to each person's value), and the unit of `value_sq`: 1 fen, or coarser when
/// the bounds are so wide that squares in fen would overflow a 64-bit sum.
fn value_bounds(engine: &Engine, sources: &Sources) -> (Option<(i64, i64)>, i64) {
    let bounds = engine
        .policy()
        .tables
        .get(&sources.t(false, "orders"))
        .and_then(|t| t.columns.get("amount_fen"))
        .and_then(|c| c.bounds);
    let widest = bounds.map_or(0, |(lo, hi)| lo.unsigned_abs().max(hi.unsigned_abs()));
    // (widest / unit)² ≤ 2⁴⁰: a sum over millions of people stays far from 2⁶³.
    let unit = widest.div_ceil(1 << 20).max(1);
    (bounds, i64::try_from(unit).unwrap_or(i64::MAX))
}

/// Registers `measure.lift_outcomes` from `base_sql`, trusted SQL in the engine's
/// session giving `person, campaign_id, grp, converted, value_fen`; `sources` are the
/// tables it reads (the derived table inherits their strictest rules). The lift report
/// and the coverage simulation ([`crate::simulate`]) both register through here.
pub(crate) async fn register_outcomes_from(
    engine: &mut Engine,
    base_sql: &str,
    sources: &Sources,
) -> Result<()> {
    let (amount, unit) = value_bounds(engine, sources);
    let names = [
        sources.t(true, "holdout"),
        sources.t(false, "users"),
        sources.t(true, "campaigns"),
        sources.t(false, "orders"),
    ];
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let dp =
        engine.policy().combined(refs.iter().copied()).mode == jingteng_engine::ReleaseMode::Dp;
    // The square of the value as a DP release bounds it: a DP sum clamps each
    // person's value to the bounds, so the square is of the clamped value; a threshold
    // release sums exact values, so the square is of the exact value. Kept as a
    // double: an exact sum of squares could overflow 64 bits; capped far above any
    // bound so that a DP release's cast to a 64-bit integer cannot fail.
    let v = match (dp, amount) {
        (true, Some((lo, hi))) => {
            format!("LEAST(GREATEST(CAST(value_fen AS DOUBLE), {lo}.0), {hi}.0)")
        }
        _ => "CAST(value_fen AS DOUBLE)".to_string(),
    };
    let sql = format!(
        "SELECT person, campaign_id, grp, converted, value_fen,
                LEAST(({v} / {unit}.0) * ({v} / {unit}.0), 1e18) AS value_sq
         FROM ({base_sql}) base"
    );
    let plan = engine
        .session()
        .sql(&sql)
        .await
        .map_err(|e| Error::Internal(format!("planning the holdout outcomes: {e}")))?
        .into_unoptimized_plan();
    let plain = |role| ColumnRule {
        role,
        bounds: None,
        aggregates: Vec::new(),
    };
    let measure = |bounds| ColumnRule {
        role: Role::Measure,
        bounds,
        aggregates: vec!["count".into(), "sum".into(), "avg".into()],
    };
    let columns = vec![
        ("person".to_string(), plain(Role::Person)),
        ("campaign_id".into(), plain(Role::Dimension)),
        ("grp".into(), plain(Role::Dimension)),
        ("converted".into(), measure(Some((0, 1)))),
        ("value_fen".into(), measure(amount)),
        (
            "value_sq".into(),
            measure(amount.map(|(lo, hi)| {
                let w = lo
                    .unsigned_abs()
                    .max(hi.unsigned_abs())
                    .div_ceil(unit.unsigned_abs());
                let w = i64::try_from(w).unwrap_or(i64::MAX);
                (0, w.saturating_mul(w))
            })),
        ),
    ];
    engine
        .register_derived(LIFT_OUTCOMES, plan, columns, false, &refs)
        .await?;
    Ok(())
}

/// One group of the holdout, as released.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupFigures {
    /// People (linked to the retailer).
    pub people: i64,
    /// Of them, people who bought the brand in the window.
    pub converters: i64,
    /// Their GMV of the brand in the window, fen.
    pub gmv_fen: i64,
    /// `converters / people`.
    #[serde(deserialize_with = "crate::nan_if_null")]
    pub rate: f64,
    /// Noise scales (0 when exact): people, converters, GMV.
    pub noise: [f64; 3],
    /// Sum over the group's people of their GMV squared, in units of
    /// [`LiftReport::value_sq_unit_fen`] squared (for the variance of the value).
    #[serde(deserialize_with = "crate::nan_if_null")]
    pub gmv_squares: f64,
    /// Its noise scale (0 when exact).
    #[serde(deserialize_with = "crate::nan_if_null")]
    pub gmv_squares_noise: f64,
}

/// One campaign's lift.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignLift {
    /// The campaign.
    pub campaign_id: String,
    /// Its spend, fen.
    pub spend_fen: i64,
    /// The test group (exposed or not).
    pub test: Option<GroupFigures>,
    /// The control group (never exposed).
    pub control: Option<GroupFigures>,
    /// `p_test − p_control`, Newcombe hybrid score interval.
    pub itt_difference: Option<Interval>,
    /// `p_test / p_control − 1`, log-adjusted ratio interval.
    pub relative_lift: Option<Interval>,
    /// `conv_test − conv_control · N_test / N_control`.
    pub incremental_conversions: Option<f64>,
    /// `gmv_test − gmv_control · N_test / N_control`, fen.
    pub incremental_gmv_fen: Option<f64>,
    /// Incremental GMV per unit of spend (linked people's GMV over the whole spend).
    pub iroas: Option<f64>,
    /// `gmv_test / N_test − gmv_control / N_control` (fen per test person), with its
    /// bootstrap interval.
    pub incremental_gmv_per_person: Option<Interval>,
    /// Incremental GMV (fen) with its bootstrap interval; the estimate is
    /// `incremental_gmv_fen`.
    pub incremental_gmv: Option<Interval>,
    /// iROAS with its interval (the incremental GMV interval over the spend).
    pub iroas_interval: Option<Interval>,
    /// Why figures are missing, if they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A lift report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LiftReport {
    /// The rules used.
    pub settings: LiftSettings,
    /// The match it stands on.
    pub coverage: Coverage,
    /// Per campaign.
    pub campaigns: Vec<CampaignLift>,
    /// The unit (fen) of the released squares of GMV (`gmv_squares` is in this unit
    /// squared).
    pub value_sq_unit_fen: i64,
    /// How the value interval is computed, in one sentence.
    pub value_interval: String,
    /// Every query, with how it was released.
    pub released: Vec<Released>,
    /// What is not computed.
    pub not_yet: Vec<String>,
}

/// Runs the lift analysis: registers `measure.lift_outcomes`, releases the group
/// figures through the engine's check, and computes the estimators and intervals.
pub async fn lift(
    engine: &mut Engine,
    info: &ViewInfo,
    settings: &LiftSettings,
    sources: &Sources,
    campaign: Option<&CampaignId>,
    analyst: &str,
) -> Result<LiftReport> {
    register_lift_outcomes(engine, settings, sources).await?;
    let (campaigns, released) = lift_released(engine, settings, sources, campaign, analyst).await?;
    Ok(LiftReport {
        settings: *settings,
        coverage: Coverage::from_view(info, sources),
        campaigns,
        value_sq_unit_fen: value_bounds(engine, sources).1,
        value_interval: VALUE_INTERVAL.into(),
        released,
        not_yet: vec!["exposed-only (LATE) lift: ITT ÷ exposure share".into()],
    })
}

/// How the value interval is computed.
const VALUE_INTERVAL: &str = "parametric bootstrap from the released people, GMV and sum of squared GMV of each group: each replicate redraws a group's GMV from its normal sampling distribution and adds fresh discrete Laplace noise at the released scales; percentiles of the replicates (DP releases clamp each person's GMV to the order amount's bounds)";

/// Seed of one campaign's bootstrap: the settings' seed mixed with the id (FNV-1a).
fn campaign_seed(seed: u64, id: &str) -> u64 {
    id.bytes().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The lift figures from a registered `measure.lift_outcomes`: releases the group
/// figures through the engine's check and computes the estimators and intervals.
pub(crate) async fn lift_released(
    engine: &Engine,
    settings: &LiftSettings,
    sources: &Sources,
    campaign: Option<&CampaignId>,
    analyst: &str,
) -> Result<(Vec<CampaignLift>, Vec<Released>)> {
    settings.check()?;
    let mut log = Vec::new();
    let filter = CampaignId::filter(campaign, "");
    let campaigns_table = sources.t(true, "campaigns");
    let spend = ask(
        engine,
        "campaigns and spend",
        format!(
            "SELECT campaign_id, SUM(spend_fen) AS spend_fen FROM {campaigns_table} {filter} GROUP BY campaign_id ORDER BY campaign_id"
        ),
        analyst,
        &mut log,
    )
    .await?;
    if let Some(c) = campaign
        && spend.rows().is_empty()
    {
        return Err(Error::Input(format!(
            "there is no campaign {} in {campaigns_table}",
            c.as_str()
        )));
    }
    let groups = ask(
        engine,
        "holdout groups: people, converters, GMV, sum of squared GMV",
        format!(
            "SELECT campaign_id, grp, COUNT(*) AS people, SUM(converted) AS converters, SUM(value_fen) AS gmv_fen, SUM(value_sq) AS gmv_sq FROM {LIFT_OUTCOMES} {filter} GROUP BY campaign_id, grp ORDER BY campaign_id, grp"
        ),
        analyst,
        &mut log,
    )
    .await?;
    let noise = [
        groups.noise_scale("people"),
        groups.noise_scale("converters"),
        groups.noise_scale("gmv_fen"),
    ];
    let sq_noise = groups.noise_scale("gmv_sq");
    let dp = groups.is_dp();
    let (ci, gi, pi, xi, vi, qi) = (
        groups.col("campaign_id")?,
        groups.col("grp")?,
        groups.col("people")?,
        groups.col("converters")?,
        groups.col("gmv_fen")?,
        groups.col("gmv_sq")?,
    );
    let unit = value_bounds(engine, sources).1 as f64;
    let z = stats::z_two_sided(settings.confidence);
    let (sci, ssi) = (spend.col("campaign_id")?, spend.col("spend_fen")?);
    let mut out = Vec::new();
    for s in spend.rows() {
        let id = text(&s[sci]);
        let spend_fen = int(&s[ssi], "spend_fen")?;
        let group = |name: &str| -> Result<Option<GroupFigures>> {
            let Some(r) = groups
                .rows()
                .iter()
                .find(|r| text(&r[ci]) == id && text(&r[gi]) == name)
            else {
                return Ok(None);
            };
            let people = int(&r[pi], "people")?;
            let converters = int(&r[xi], "converters")?;
            Ok(Some(GroupFigures {
                people,
                converters,
                gmv_fen: int(&r[vi], "gmv_fen")?,
                rate: if people > 0 {
                    converters.clamp(0, people) as f64 / people as f64
                } else {
                    f64::NAN
                },
                noise: if dp { noise } else { [0.0; 3] },
                gmv_squares: float(&r[qi], "gmv_sq")?,
                gmv_squares_noise: if dp { sq_noise } else { 0.0 },
            }))
        };
        let (test, control) = (group("test")?, group("control")?);
        let mut c = CampaignLift {
            campaign_id: id,
            spend_fen,
            test: test.clone(),
            control: control.clone(),
            itt_difference: None,
            relative_lift: None,
            incremental_conversions: None,
            incremental_gmv_fen: None,
            iroas: None,
            incremental_gmv_per_person: None,
            incremental_gmv: None,
            iroas_interval: None,
            note: None,
        };
        match (&test, &control) {
            (Some(t), Some(k)) if t.people > 0 && k.people > 0 => {
                let prop = |g: &GroupFigures| Proportion {
                    successes: g.converters as f64,
                    trials: g.people as f64,
                    successes_noise: g.noise[1],
                    trials_noise: g.noise[0],
                };
                let (pt, pc) = (prop(t), prop(k));
                c.itt_difference = Some(stats::newcombe_difference(&pt, &pc, z));
                if k.converters > 0 {
                    let r = stats::log_ratio(&pt, &pc, z);
                    c.relative_lift = Some(Interval {
                        estimate: r.estimate - 1.0,
                        low: r.low - 1.0,
                        high: r.high - 1.0,
                    });
                }
                let scale = t.people as f64 / k.people as f64;
                c.incremental_conversions = Some(t.converters as f64 - k.converters as f64 * scale);
                let inc_gmv = t.gmv_fen as f64 - k.gmv_fen as f64 * scale;
                c.incremental_gmv_fen = Some(inc_gmv);
                c.iroas = (spend_fen > 0).then(|| inc_gmv / spend_fen as f64);
                let moments = |g: &GroupFigures| ValueMoments {
                    people: g.people as f64,
                    sum: g.gmv_fen as f64,
                    sum_squares: g.gmv_squares * unit * unit,
                    people_noise: g.noise[0],
                    sum_noise: g.noise[2],
                };
                let v = stats::value_bootstrap(
                    &moments(t),
                    &moments(k),
                    settings.confidence,
                    settings.bootstrap_draws,
                    campaign_seed(settings.bootstrap_seed, &c.campaign_id),
                );
                c.incremental_gmv_per_person = Some(v.per_person);
                c.incremental_gmv = Some(v.total);
                c.iroas_interval = (spend_fen > 0).then(|| {
                    let s = spend_fen as f64;
                    Interval {
                        estimate: v.total.estimate / s,
                        low: v.total.low / s,
                        high: v.total.high / s,
                    }
                });
            }
            _ => {
                c.note =
                    Some("a group was left out (too few people to release) or its released size is not positive (noise)".into());
            }
        }
        out.push(c);
    }
    Ok((out, log))
}
