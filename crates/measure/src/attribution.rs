//! Attribution of the retailer's orders to the media party's exposures.
//!
//! The rule (the same as `truth.json`'s, docs/synthetic-world.md): an order of brand B
//! at time T is credited to the latest **click** on a campaign of B in the click window
//! before it (`0 < T − t ≤ 7 days`); if there is none, to the latest **impression** of
//! a campaign of B in the view window (`0 < T − t ≤ 1 day`); ties at one instant go to
//! the campaign listed first (smallest id). A person's credited orders count in order
//! of time, at most `cap` of them (8). First touch takes the earliest touch of the same
//! kind and window instead; linear splits the order evenly over all of them.
//!
//! The retailer's view has no order id, so a person's orders are numbered by (time,
//! brand, sku, amount, channel, store): two credited orders of one person at the same
//! second, straddling the cap, are the only case where this can pick another order
//! than the retailer's own numbering would.

use jingteng_engine::policy::{ColumnRule, Role};
use jingteng_engine::{Engine, ViewInfo};
use serde::{Deserialize, Serialize};

use crate::coverage::Coverage;
use crate::release::{CampaignId, Released, Rows, Sources, ask, int, text};
use crate::{Error, MAX_DAYS, MAX_UTC_OFFSET_S, Result};

/// The derived table of attributed orders.
pub const ATTRIBUTED: &str = "measure.attributed";
/// Credit of a whole order in `credit_ppm`.
const WHOLE: i64 = 1_000_000;

/// Which touch gets the credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Model {
    /// The latest touch (click preferred over view).
    #[default]
    LastTouch,
    /// The earliest touch in the window (click preferred over view).
    FirstTouch,
    /// Every touch in the window of the preferred kind, evenly.
    Linear,
}

impl std::str::FromStr for Model {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "last-touch" => Ok(Self::LastTouch),
            "first-touch" => Ok(Self::FirstTouch),
            "linear" => Ok(Self::Linear),
            other => Err(Error::Input(format!(
                "attribution model {other:?}: last-touch, first-touch or linear"
            ))),
        }
    }
}

impl Model {
    /// `last-touch`, `first-touch` or `linear`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LastTouch => "last-touch",
            Self::FirstTouch => "first-touch",
            Self::Linear => "linear",
        }
    }
}

/// The attribution rules. Versioned by value: two reports compare only when these are
/// equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributionSettings {
    /// The model.
    pub model: Model,
    /// Click window, seconds (default 7 days).
    pub click_window_s: i64,
    /// View window, seconds (default 1 day).
    pub view_window_s: i64,
    /// Credited orders per person, at most (default 8, IPA's).
    pub cap: u32,
    /// The time zone of days in breakdowns, as seconds east of UTC (default +08:00).
    pub utc_offset_s: i64,
}

impl Default for AttributionSettings {
    fn default() -> Self {
        Self {
            model: Model::LastTouch,
            click_window_s: 7 * 86_400,
            view_window_s: 86_400,
            cap: 8,
            utc_offset_s: 8 * 3_600,
        }
    }
}

impl AttributionSettings {
    /// A short version of these settings (8 hex digits of a 64-bit FNV-1a hash of
    /// their JSON): two reports, or two months, compare like with like only when
    /// their versions are equal.
    pub fn version(&self) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{:08x}", h >> 32)
    }

    /// The settings in words, e.g. `last-touch, click 7 d, view 24 h, cap 8, UTC+08:00`.
    pub fn label(&self) -> String {
        let off = self.utc_offset_s;
        format!(
            "{}, click {} d, view {} h, cap {}, UTC{}{:02}:{:02}",
            self.model.as_str(),
            self.click_window_s / 86_400,
            self.view_window_s / 3_600,
            self.cap,
            if off < 0 { '-' } else { '+' },
            off.abs() / 3_600,
            off.abs() % 3_600 / 60
        )
    }

    fn check(&self) -> Result<()> {
        let days = MAX_DAYS * 86_400;
        if !(1..=days).contains(&self.click_window_s)
            || !(0..=days).contains(&self.view_window_s)
            || self.cap == 0
            || self.utc_offset_s.abs() > MAX_UTC_OFFSET_S
        {
            return Err(Error::Input(format!(
                "attribution settings: windows must be positive and at most {MAX_DAYS} days, the cap at least 1 and the UTC offset at most 14 h either way (click {} s, view {} s, cap {}, offset {} s)",
                self.click_window_s, self.view_window_s, self.cap, self.utc_offset_s
            )));
        }
        Ok(())
    }
}

/// A breakdown dimension of attributed orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Dimension {
    /// The placement of the credited touch.
    Placement,
    /// The order's day (in the settings' time zone).
    Day,
    /// The person's age band at the media party.
    AgeBand,
    /// The order's channel (online / offline).
    Channel,
    /// Whether the credited touch was a click or an impression.
    Touch,
}

impl Dimension {
    /// The column of the derived table.
    pub fn column(self) -> &'static str {
        match self {
            Self::Placement => "placement",
            Self::Day => "day",
            Self::AgeBand => "age_band",
            Self::Channel => "channel",
            Self::Touch => "touch",
        }
    }
}

impl std::str::FromStr for Dimension {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "placement" => Ok(Self::Placement),
            "day" => Ok(Self::Day),
            "age_band" | "age-band" | "age" => Ok(Self::AgeBand),
            "channel" => Ok(Self::Channel),
            "touch" => Ok(Self::Touch),
            other => Err(Error::Input(format!(
                "breakdown {other:?}: placement, day, age_band, channel or touch"
            ))),
        }
    }
}

/// The trusted plan of one row per (credited order, credited touch), as SQL over the
/// raw view. Only [`register_attributed`] runs it, inside the engine's session.
fn attributed_sql(s: &AttributionSettings, src: &Sources) -> String {
    let (orders, exposures, campaigns, users) = (
        src.t(false, "orders"),
        src.t(true, "exposures"),
        src.t(true, "campaigns"),
        src.t(true, "users"),
    );
    let (click, view, cap, off) = (s.click_window_s, s.view_window_s, s.cap, s.utc_offset_s);
    let chosen = match s.model {
        Model::LastTouch => "last_rank = 1",
        Model::FirstTouch => "first_rank = 1",
        Model::Linear => "TRUE",
    };
    // Linear: 1/n of the order to each touch, the remainder of the integer division to
    // the first, so that each order's credits add up to exactly one order and its amount.
    let (credit_ppm, credit_fen) = match s.model {
        Model::Linear => (
            format!(
                "CAST({WHOLE} / n_touches + CASE WHEN first_rank = 1 THEN {WHOLE} % n_touches ELSE 0 END AS BIGINT)"
            ),
            "CAST(amount_fen / n_touches + CASE WHEN first_rank = 1 THEN amount_fen % n_touches ELSE 0 END AS BIGINT)".to_string(),
        ),
        _ => (
            format!("CAST({WHOLE} AS BIGINT)"),
            "CAST(amount_fen AS BIGINT)".to_string(),
        ),
    };
    format!(
        "WITH o AS (
            SELECT person, ts AS order_ts, to_unixtime(ts) AS order_s, brand, channel, amount_fen,
                   row_number() OVER (PARTITION BY person ORDER BY ts, brand, sku, amount_fen, channel, store_id) AS order_no
            FROM {orders}
        ),
        t AS (
            SELECT e.person, e.campaign_id, to_unixtime(e.ts) AS touch_s, e.placement, e.kind, c.brand
            FROM {exposures} e JOIN {campaigns} c ON e.campaign_id = c.campaign_id
            WHERE e.kind = 'click' OR e.kind = 'impression'
        ),
        cand AS (
            SELECT o.person, o.order_no, o.order_ts, o.order_s, o.brand, o.channel, o.amount_fen,
                   t.campaign_id, t.touch_s, t.placement, t.kind
            FROM o JOIN t ON o.person = t.person AND o.brand = t.brand
            WHERE t.touch_s < o.order_s
              AND ((t.kind = 'click' AND o.order_s - t.touch_s <= {click})
                OR (t.kind = 'impression' AND o.order_s - t.touch_s <= {view}))
        ),
        kinded AS (
            SELECT *, MAX(CASE WHEN kind = 'click' THEN 1 ELSE 0 END) OVER (PARTITION BY person, order_no) AS has_click
            FROM cand
        ),
        ranked AS (
            SELECT *,
                   row_number() OVER (PARTITION BY person, order_no ORDER BY touch_s DESC, campaign_id ASC, placement ASC) AS last_rank,
                   row_number() OVER (PARTITION BY person, order_no ORDER BY touch_s ASC, campaign_id ASC, placement ASC) AS first_rank,
                   COUNT(*) OVER (PARTITION BY person, order_no) AS n_touches
            FROM kinded
            WHERE (kind = 'click') = (has_click = 1)
        ),
        chosen AS (
            SELECT *, dense_rank() OVER (PARTITION BY person ORDER BY order_no) AS nth
            FROM ranked WHERE {chosen}
        )
        SELECT c.person, c.campaign_id, c.brand, c.placement, c.kind AS touch,
               CAST(to_timestamp_seconds(c.order_s + {off}) AS DATE) AS day,
               c.channel, u.age_band, c.order_ts,
               CAST(c.amount_fen AS BIGINT) AS amount_fen,
               {credit_ppm} AS credit_ppm,
               {credit_fen} AS credit_fen
        FROM chosen c LEFT JOIN {users} u ON c.person = u.person
        WHERE c.nth <= {cap}"
    )
}

/// Builds the attributed-orders plan in the engine's trusted session and registers it
/// as `measure.attributed` (one row per credited order and touch: `person`,
/// `campaign_id`, `brand`, `placement`, `touch`, `day`, `channel`, `age_band`,
/// `order_ts`, `amount_fen`, `credit_ppm`, `credit_fen`), released under the most
/// restrictive rules of the tables it reads.
pub async fn register_attributed(
    engine: &mut Engine,
    settings: &AttributionSettings,
    sources: &Sources,
) -> Result<()> {
    settings.check()?;
    let sql = attributed_sql(settings, sources);
    let plan = engine
        .session()
        .sql(&sql)
        .await
        .map_err(|e| Error::Internal(format!("planning the attribution: {e}")))?
        .into_unoptimized_plan();
    let amount = engine
        .policy()
        .tables
        .get(&sources.t(false, "orders"))
        .and_then(|t| t.columns.get("amount_fen"))
        .and_then(|c| c.bounds);
    let rule = |role: Role, bounds: Option<(i64, i64)>| ColumnRule {
        role,
        bounds,
        aggregates: if role == Role::Measure {
            vec!["count".into(), "sum".into(), "avg".into()]
        } else {
            Vec::new()
        },
    };
    let mut columns = vec![("person".to_string(), rule(Role::Person, None))];
    for d in [
        "campaign_id",
        "brand",
        "placement",
        "touch",
        "day",
        "channel",
        "age_band",
    ] {
        columns.push((d.into(), rule(Role::Dimension, None)));
    }
    columns.push(("order_ts".into(), rule(Role::Timestamp, None)));
    columns.push(("amount_fen".into(), rule(Role::Measure, amount)));
    columns.push(("credit_ppm".into(), rule(Role::Measure, Some((0, WHOLE)))));
    columns.push(("credit_fen".into(), rule(Role::Measure, amount)));
    let (orders, exposures, campaigns, users) = (
        sources.t(false, "orders"),
        sources.t(true, "exposures"),
        sources.t(true, "campaigns"),
        sources.t(true, "users"),
    );
    engine
        .register_derived(
            ATTRIBUTED,
            plan,
            columns,
            false,
            &[&orders, &exposures, &campaigns, &users],
        )
        .await?;
    Ok(())
}

/// One campaign's attributed results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CampaignAttribution {
    /// The campaign.
    pub campaign_id: String,
    /// Its brand.
    pub brand: String,
    /// Its spend, fen.
    pub spend_fen: i64,
    /// Whether the attributed figures were released (not suppressed under the
    /// threshold or the DP group selection).
    pub released: bool,
    /// Attributed conversions (orders; fractional under the linear model).
    #[serde(deserialize_with = "crate::nan_if_null")]
    pub conversions: f64,
    /// Attributed GMV, fen.
    pub gmv_fen: i64,
    /// Impression rows of the campaign (all the media party's users).
    pub impressions: Option<i64>,
    /// Click rows of the campaign.
    pub clicks: Option<i64>,
    /// Impression rows of people linked to the retailer: the ones whose purchases are
    /// visible, so the denominator of the CVRs.
    pub linked_impressions: Option<i64>,
    /// Click rows of linked people.
    pub linked_clicks: Option<i64>,
    /// Conversions per click of linked people.
    pub cvr_click: Option<f64>,
    /// Conversions per impression of linked people.
    pub cvr_impression: Option<f64>,
    /// Spend per attributed conversion, fen (rounded).
    pub cpa_fen: Option<i64>,
    /// Attributed GMV per unit of spend.
    pub roas: Option<f64>,
}

/// One row of a breakdown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BreakdownRow {
    /// The campaign.
    pub campaign_id: String,
    /// The dimension's value.
    pub value: String,
    /// Attributed conversions.
    #[serde(deserialize_with = "crate::nan_if_null")]
    pub conversions: f64,
    /// Attributed GMV, fen.
    pub gmv_fen: i64,
}

/// Attributed results by one dimension.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Breakdown {
    /// The dimension.
    pub dimension: Dimension,
    /// Its released rows (groups under the threshold are left out).
    pub rows: Vec<BreakdownRow>,
}

/// An attribution report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttributionReport {
    /// The rules used.
    pub settings: AttributionSettings,
    /// The match it stands on.
    pub coverage: Coverage,
    /// Per campaign.
    pub campaigns: Vec<CampaignAttribution>,
    /// Breakdowns asked for.
    pub breakdowns: Vec<Breakdown>,
    /// Every query, with how it was released.
    pub released: Vec<Released>,
}

fn conversions_expr(model: Model) -> &'static str {
    match model {
        Model::Linear => "SUM(credit_ppm) AS conversions",
        _ => "COUNT(*) AS conversions",
    }
}

fn conversions_of(model: Model, raw: i64) -> f64 {
    match model {
        Model::Linear => raw as f64 / WHOLE as f64,
        _ => raw as f64,
    }
}

/// Runs attribution: registers `measure.attributed` and releases per-campaign figures
/// (and the breakdowns in `by`) through the engine's check, for `analyst`.
pub async fn attribute(
    engine: &mut Engine,
    info: &ViewInfo,
    settings: &AttributionSettings,
    sources: &Sources,
    campaign: Option<&CampaignId>,
    by: &[Dimension],
    analyst: &str,
) -> Result<AttributionReport> {
    register_attributed(engine, settings, sources).await?;
    let engine = &*engine;
    let mut log = Vec::new();
    let filter = CampaignId::filter(campaign, "");
    let campaigns_table = sources.t(true, "campaigns");
    let spend = ask(
        engine,
        "campaigns and spend",
        format!(
            "SELECT campaign_id, brand, SUM(spend_fen) AS spend_fen FROM {campaigns_table} {filter} GROUP BY campaign_id, brand ORDER BY campaign_id"
        ),
        analyst,
        &mut log,
    )
    .await?;
    let mut out: Vec<CampaignAttribution> = Vec::new();
    let (ci, bi, si) = (
        spend.col("campaign_id")?,
        spend.col("brand")?,
        spend.col("spend_fen")?,
    );
    for r in spend.rows() {
        out.push(CampaignAttribution {
            campaign_id: text(&r[ci]),
            brand: text(&r[bi]),
            spend_fen: int(&r[si], "spend_fen")?,
            released: false,
            conversions: 0.0,
            gmv_fen: 0,
            impressions: None,
            clicks: None,
            linked_impressions: None,
            linked_clicks: None,
            cvr_click: None,
            cvr_impression: None,
            cpa_fen: None,
            roas: None,
        });
    }
    if let Some(c) = campaign
        && out.is_empty()
    {
        return Err(Error::Input(format!(
            "there is no campaign {} in {campaigns_table}",
            c.as_str()
        )));
    }

    let attributed = ask(
        engine,
        "attributed conversions and GMV per campaign",
        format!(
            "SELECT campaign_id, {}, SUM(credit_fen) AS gmv_fen FROM {ATTRIBUTED} {filter} GROUP BY campaign_id ORDER BY campaign_id",
            conversions_expr(settings.model)
        ),
        analyst,
        &mut log,
    )
    .await?;
    let (ci, ki, gi) = (
        attributed.col("campaign_id")?,
        attributed.col("conversions")?,
        attributed.col("gmv_fen")?,
    );
    for r in attributed.rows() {
        let id = text(&r[ci]);
        if let Some(c) = out.iter_mut().find(|c| c.campaign_id == id) {
            c.released = true;
            c.conversions = conversions_of(settings.model, int(&r[ki], "conversions")?);
            c.gmv_fen = int(&r[gi], "gmv_fen")?;
        }
    }

    let exposures = sources.t(true, "exposures");
    let retail_users = sources.t(false, "users");
    let efilter = CampaignId::filter(campaign, "e.");
    let all = ask(
        engine,
        "impressions and clicks per campaign",
        format!(
            "SELECT e.campaign_id, e.kind, COUNT(*) AS events FROM {exposures} e {efilter} GROUP BY e.campaign_id, e.kind"
        ),
        analyst,
        &mut log,
    )
    .await?;
    let linked = ask(
        engine,
        "impressions and clicks of people linked to the retailer",
        format!(
            "SELECT e.campaign_id, e.kind, COUNT(*) AS events FROM {exposures} e JOIN {retail_users} r ON e.person = r.person {efilter} GROUP BY e.campaign_id, e.kind"
        ),
        analyst,
        &mut log,
    )
    .await?;
    for (rows, is_linked) in [(&all, false), (&linked, true)] {
        let (ci, ki, ni) = (
            rows.col("campaign_id")?,
            rows.col("kind")?,
            rows.col("events")?,
        );
        for r in rows.rows() {
            let id = text(&r[ci]);
            let Some(c) = out.iter_mut().find(|c| c.campaign_id == id) else {
                continue;
            };
            let n = Some(int(&r[ni], "events")?);
            match (text(&r[ki]).as_str(), is_linked) {
                ("impression", false) => c.impressions = n,
                ("click", false) => c.clicks = n,
                ("impression", true) => c.linked_impressions = n,
                ("click", true) => c.linked_clicks = n,
                _ => {}
            }
        }
    }
    for c in &mut out {
        if !c.released {
            continue;
        }
        let per = |d: Option<i64>| d.filter(|d| *d > 0).map(|d| c.conversions / d as f64);
        c.cvr_click = per(c.linked_clicks);
        c.cvr_impression = per(c.linked_impressions);
        c.cpa_fen =
            (c.conversions > 0.0).then(|| (c.spend_fen as f64 / c.conversions).round() as i64);
        c.roas = (c.spend_fen > 0).then(|| c.gmv_fen as f64 / c.spend_fen as f64);
    }

    let mut breakdowns = Vec::new();
    for d in by {
        let col = d.column();
        let rows = ask(
            engine,
            &format!("attributed conversions and GMV per campaign and {col}"),
            format!(
                "SELECT campaign_id, {col}, {}, SUM(credit_fen) AS gmv_fen FROM {ATTRIBUTED} {filter} GROUP BY campaign_id, {col} ORDER BY campaign_id, {col}",
                conversions_expr(settings.model)
            ),
            analyst,
            &mut log,
        )
        .await?;
        breakdowns.push(breakdown(*d, settings.model, &rows)?);
    }

    Ok(AttributionReport {
        settings: *settings,
        coverage: Coverage::from_view(info, sources),
        campaigns: out,
        breakdowns,
        released: log,
    })
}

fn breakdown(dimension: Dimension, model: Model, rows: &Rows) -> Result<Breakdown> {
    let (ci, vi, ki, gi) = (
        rows.col("campaign_id")?,
        rows.col(dimension.column())?,
        rows.col("conversions")?,
        rows.col("gmv_fen")?,
    );
    let rows = rows
        .rows()
        .iter()
        .map(|r| {
            Ok(BreakdownRow {
                campaign_id: text(&r[ci]),
                value: text(&r[vi]),
                conversions: conversions_of(model, int(&r[ki], "conversions")?),
                gmv_fen: int(&r[gi], "gmv_fen")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Breakdown { dimension, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_and_dimensions_parse() {
        assert_eq!("linear".parse::<Model>().unwrap(), Model::Linear);
        assert!("last".parse::<Model>().is_err());
        assert_eq!("age_band".parse::<Dimension>().unwrap(), Dimension::AgeBand);
        assert!("person".parse::<Dimension>().is_err());
    }

    #[test]
    fn versions_follow_the_settings() {
        let a = AttributionSettings::default();
        assert_eq!(a.version(), AttributionSettings::default().version());
        assert_eq!(a.version().len(), 8);
        let b = AttributionSettings { cap: 4, ..a };
        assert_ne!(a.version(), b.version());
        assert_eq!(
            a.label(),
            "last-touch, click 7 d, view 24 h, cap 8, UTC+08:00"
        );
    }

    #[test]
    fn settings_are_checked() {
        let bad = AttributionSettings {
            cap: 0,
            ..Default::default()
        };
        assert!(bad.check().is_err());
        assert!(AttributionSettings::default().check().is_ok());
    }
}
