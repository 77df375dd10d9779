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
//! variance. Value (GMV, iROAS) gets point estimates only: its bootstrap interval is
//! not built yet.

use jingteng_engine::policy::{ColumnRule, Role};
use jingteng_engine::{Engine, ViewInfo};
use serde::Serialize;

use crate::coverage::Coverage;
use crate::release::{CampaignId, Released, Sources, ask, int, text};
use crate::stats::{self, Interval, Proportion};
use crate::{Error, Result};

/// The derived table of holdout outcomes.
pub const LIFT_OUTCOMES: &str = "measure.lift_outcomes";

/// How conversions are counted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LiftSettings {
    /// Days after the campaign's last day in which orders still count (7).
    pub tail_days: i64,
    /// Time zone of the campaign's dates, seconds east of UTC (+08:00).
    pub utc_offset_s: i64,
    /// Confidence of the intervals (0.95).
    pub confidence: f64,
}

impl Default for LiftSettings {
    fn default() -> Self {
        Self {
            tail_days: 7,
            utc_offset_s: 8 * 3_600,
            confidence: 0.95,
        }
    }
}

fn outcomes_sql(s: &LiftSettings, src: &Sources) -> String {
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
                   CAST(CAST(start_date AS INT) AS BIGINT) * 86400 - {off} AS from_s,
                   (CAST(CAST(end_date AS INT) AS BIGINT) + 1 + {tail}) * 86400 - {off} AS to_s
            FROM {campaigns}
        ),
        o AS (SELECT person, brand, CAST(ts AS BIGINT) AS s, amount_fen FROM {orders}),
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
/// holdout with `grp`, `converted` (0/1) and `value_fen` (the brand's GMV in the
/// window).
pub async fn register_lift_outcomes(
    engine: &mut Engine,
    settings: &LiftSettings,
    sources: &Sources,
) -> Result<()> {
    if settings.tail_days < 0 || !(settings.confidence > 0.0 && settings.confidence < 1.0) {
        return Err(Error::Input(format!(
            "lift settings: tail {} days, confidence {}",
            settings.tail_days, settings.confidence
        )));
    }
    let plan = engine
        .session()
        .sql(&outcomes_sql(settings, sources))
        .await
        .map_err(|e| Error::Internal(format!("planning the holdout outcomes: {e}")))?
        .into_unoptimized_plan();
    let amount = engine
        .policy()
        .tables
        .get(&sources.t(false, "orders"))
        .and_then(|t| t.columns.get("amount_fen"))
        .and_then(|c| c.bounds);
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
    ];
    let names = [
        sources.t(true, "holdout"),
        sources.t(false, "users"),
        sources.t(true, "campaigns"),
        sources.t(false, "orders"),
    ];
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    engine
        .register_derived(LIFT_OUTCOMES, plan, columns, false, &refs)
        .await?;
    Ok(())
}

/// One group of the holdout, as released.
#[derive(Debug, Clone, Serialize)]
pub struct GroupFigures {
    /// People (linked to the retailer).
    pub people: i64,
    /// Of them, people who bought the brand in the window.
    pub converters: i64,
    /// Their GMV of the brand in the window, fen.
    pub gmv_fen: i64,
    /// `converters / people`.
    pub rate: f64,
    /// Noise scales (0 when exact): people, converters, GMV.
    pub noise: [f64; 3],
}

/// One campaign's lift.
#[derive(Debug, Clone, Serialize)]
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
    /// Why figures are missing, if they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A lift report.
#[derive(Debug, Clone, Serialize)]
pub struct LiftReport {
    /// The rules used.
    pub settings: LiftSettings,
    /// The match it stands on.
    pub coverage: Coverage,
    /// Per campaign.
    pub campaigns: Vec<CampaignLift>,
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
    let engine = &*engine;
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
        "holdout groups: people, converters, GMV",
        format!(
            "SELECT campaign_id, grp, COUNT(*) AS people, SUM(converted) AS converters, SUM(value_fen) AS gmv_fen FROM {LIFT_OUTCOMES} {filter} GROUP BY campaign_id, grp ORDER BY campaign_id, grp"
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
    let dp = groups.is_dp();
    let (ci, gi, pi, xi, vi) = (
        groups.col("campaign_id")?,
        groups.col("grp")?,
        groups.col("people")?,
        groups.col("converters")?,
        groups.col("gmv_fen")?,
    );
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
            }
            _ => {
                c.note =
                    Some("a group was left out (too few people to release) or its released size is not positive (noise)".into());
            }
        }
        out.push(c);
    }
    Ok(LiftReport {
        settings: *settings,
        coverage: Coverage::from_view(info, sources),
        campaigns: out,
        released: log,
        not_yet: vec![
            "bootstrap (BCa) intervals for incremental GMV and iROAS".into(),
            "exposed-only (LATE) lift: ITT ÷ exposure share".into(),
        ],
    })
}
