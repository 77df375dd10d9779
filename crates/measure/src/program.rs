//! Program metrics across campaigns and brands, per calendar month: spend, campaigns and
//! brands active, impressions and clicks, attributed conversions and GMV, CVR,
//! month-on-month change and the re-investment rate (复投率).
//!
//! Spend, campaigns and brands come from the media party's campaign table, which is not
//! about people: the engine releases it as it is (`public`), and the monthly split is
//! arithmetic on those released rows (a campaign's spend spread evenly over its days,
//! the remainder on its first day; days in the settings' time zone). Impressions,
//! clicks and conversions are about people: trusted code builds `measure.program` (one
//! row per exposure and per credited order, with its month and whether the person is
//! linked to the retailer) and every figure is an aggregate over it released by
//! [`Engine::query`]. Conversions are credited by [`crate::attribute`]'s rules, whose
//! version the report carries so that month-on-month compares like with like.

use std::collections::{BTreeMap, BTreeSet};

use jingteng_engine::policy::{ColumnRule, PERSON, Role};
use jingteng_engine::{Engine, ViewInfo};
use serde::Serialize;

use crate::attribution::{ATTRIBUTED, AttributionSettings, Model, register_attributed};
use crate::coverage::Coverage;
use crate::release::{Released, Sources, ask, int, text};
use crate::{Error, Result};

/// The derived table of exposures and credited orders by month.
pub const PROGRAM: &str = "measure.program";
/// Credit of a whole order in `credit_ppm` (as in attribution).
const WHOLE: i64 = 1_000_000;

/// Month-on-month change of a figure: `this / last − 1` (absent when last month's
/// figure is absent or zero).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MonthChange {
    /// Spend.
    pub spend: Option<f64>,
    /// Impressions (all people).
    pub impressions: Option<f64>,
    /// Campaigns active.
    pub campaigns: Option<f64>,
    /// Conversions per click of linked people.
    pub cvr_click: Option<f64>,
}

/// One calendar month of the program.
#[derive(Debug, Clone, Serialize)]
pub struct MonthFigures {
    /// `YYYY-MM`, in the settings' time zone.
    pub month: String,
    /// Spend of the campaigns running in the month, fen (spread over their days).
    pub spend_fen: i64,
    /// Campaigns with at least one day in the month.
    pub campaigns: u64,
    /// Brands with a campaign in the month.
    pub brands: Vec<String>,
    /// Impression rows of the month (all the media party's users).
    pub impressions: Option<i64>,
    /// Click rows (all users).
    pub clicks: Option<i64>,
    /// Impression rows of people linked to the retailer.
    pub linked_impressions: Option<i64>,
    /// Click rows of people linked to the retailer.
    pub linked_clicks: Option<i64>,
    /// Attributed conversions (orders) by the month of the order: linked people only.
    pub conversions: Option<f64>,
    /// Their GMV, fen.
    pub gmv_fen: Option<i64>,
    /// Conversions per click of linked people.
    pub cvr_click: Option<f64>,
    /// Conversions per impression of linked people.
    pub cvr_impression: Option<f64>,
    /// An estimate of all people's conversions: `conversions / the retailer's match
    /// rate`, as if the retail members the match missed had been exposed and bought
    /// like the linked ones. It leans high: some of them never used the media party.
    pub conversions_estimate_all: Option<f64>,
    /// Change from the month before.
    pub change: MonthChange,
    /// Of the brands active the month before, the share active again this month
    /// (re-investment by brands).
    pub returning_brand_share: Option<f64>,
    /// The share of this month's spend from brands active the month before
    /// (re-investment by spend).
    pub returning_spend_share: Option<f64>,
}

/// A program report.
#[derive(Debug, Clone, Serialize)]
pub struct ProgramReport {
    /// The attribution rules conversions are credited by.
    pub settings: AttributionSettings,
    /// Their version: compare months or reports only when it is the same.
    pub settings_version: String,
    /// The rules in words.
    pub settings_label: String,
    /// The match it stands on.
    pub coverage: Coverage,
    /// Per month, in order.
    pub months: Vec<MonthFigures>,
    /// Brands with at least one campaign in the period.
    pub brands: Vec<String>,
    /// What to keep in mind reading the figures.
    pub notes: Vec<String>,
    /// Every query, with how it was released.
    pub released: Vec<Released>,
}

fn month_sql(ts: &str, off: i64) -> String {
    format!(
        "arrow_cast(to_char(CAST(to_timestamp_seconds(to_unixtime({ts}) + {off}) AS DATE), '%Y-%m'), 'Utf8')"
    )
}

fn program_sql(s: &AttributionSettings, src: &Sources) -> String {
    let (exposures, users) = (src.t(true, "exposures"), src.t(false, "users"));
    let off = s.utc_offset_s;
    format!(
        "SELECT e.person, {} AS month, arrow_cast(e.kind, 'Utf8') AS kind,
                arrow_cast(CASE WHEN r.person IS NULL THEN 'no' ELSE 'yes' END, 'Utf8') AS linked,
                CAST(0 AS BIGINT) AS credit_ppm, CAST(0 AS BIGINT) AS credit_fen
         FROM {exposures} e LEFT JOIN {users} r ON e.person = r.person
         WHERE e.kind = 'impression' OR e.kind = 'click'
         UNION ALL
         SELECT a.person, {} AS month, arrow_cast('conversion', 'Utf8') AS kind,
                arrow_cast('yes', 'Utf8') AS linked,
                CAST(a.credit_ppm AS BIGINT) AS credit_ppm, CAST(a.credit_fen AS BIGINT) AS credit_fen
         FROM {ATTRIBUTED} a",
        month_sql("e.ts", off),
        month_sql("a.order_ts", off),
    )
}

/// Registers `measure.attributed` (with `settings`) and `measure.program`: one row per
/// impression and click of the media party (`kind`, `linked` to the retailer or not)
/// and per credited order (`kind = 'conversion'`, `credit_ppm`, `credit_fen`), with
/// its `month`.
pub async fn register_program(
    engine: &mut Engine,
    settings: &AttributionSettings,
    sources: &Sources,
) -> Result<()> {
    register_attributed(engine, settings, sources).await?;
    let plan = engine
        .session()
        .sql(&program_sql(settings, sources))
        .await
        .map_err(|e| Error::Internal(format!("planning the program table: {e}")))?
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
        (PERSON.to_string(), plain(Role::Person)),
        ("month".into(), plain(Role::Dimension)),
        ("kind".into(), plain(Role::Dimension)),
        ("linked".into(), plain(Role::Dimension)),
        ("credit_ppm".into(), measure(Some((0, WHOLE)))),
        ("credit_fen".into(), measure(amount)),
    ];
    let names = [
        sources.t(true, "exposures"),
        sources.t(false, "users"),
        ATTRIBUTED.to_string(),
    ];
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    engine
        .register_derived(PROGRAM, plan, columns, false, &refs)
        .await?;
    Ok(())
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM` of a day since 1970-01-01.
fn month_of_day(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}")
}

/// A released `YYYY-MM-DD` as days since 1970-01-01.
fn parse_date(s: &str) -> Result<i64> {
    let parts: Vec<i64> = s
        .get(..10)
        .unwrap_or(s)
        .split('-')
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Internal(format!("date {s:?}")))?;
    match parts[..] {
        [y, m, d] if (1..=12).contains(&m) && (1..=31).contains(&d) => Ok(days_from_civil(y, m, d)),
        _ => Err(Error::Internal(format!("date {s:?}"))),
    }
}

/// A campaign as the campaign table releases it.
struct Campaign {
    brand: String,
    start: i64,
    end: i64,
    spend_fen: i64,
}

impl Campaign {
    /// Spend on `day`: spread evenly over the campaign's days, the remainder on the
    /// first day.
    fn spend_on(&self, day: i64) -> i64 {
        if day < self.start || day > self.end {
            return 0;
        }
        let days = self.end - self.start + 1;
        let per_day = self.spend_fen / days;
        if day == self.start {
            per_day + self.spend_fen % days
        } else {
            per_day
        }
    }
}

fn change(this: Option<f64>, last: Option<f64>) -> Option<f64> {
    match (this, last) {
        (Some(t), Some(l)) if l > 0.0 => Some(t / l - 1.0),
        _ => None,
    }
}

/// Runs the program report: registers the derived tables, releases the figures about
/// people through the engine's check, and computes spend, brands, re-investment and
/// month-on-month change.
pub async fn program(
    engine: &mut Engine,
    info: &ViewInfo,
    settings: &AttributionSettings,
    sources: &Sources,
    analyst: &str,
) -> Result<ProgramReport> {
    register_program(engine, settings, sources).await?;
    let engine = &*engine;
    let coverage = Coverage::from_view(info, sources);
    let mut log = Vec::new();
    let table = sources.t(true, "campaigns");
    let rows = ask(
        engine,
        "campaigns: brand, dates and spend (not about people: released as it is)",
        format!(
            "SELECT campaign_id, brand, start_date, end_date, SUM(spend_fen) AS spend_fen FROM {table} GROUP BY campaign_id, brand, start_date, end_date ORDER BY campaign_id"
        ),
        analyst,
        &mut log,
    )
    .await?;
    let (bi, si, ei, pi) = (
        rows.col("brand")?,
        rows.col("start_date")?,
        rows.col("end_date")?,
        rows.col("spend_fen")?,
    );
    let mut campaigns = Vec::new();
    for r in rows.rows() {
        let c = Campaign {
            brand: text(&r[bi]),
            start: parse_date(&text(&r[si]))?,
            end: parse_date(&text(&r[ei]))?,
            spend_fen: int(&r[pi], "spend_fen")?,
        };
        if c.end < c.start {
            return Err(Error::Input(format!(
                "{table}: a campaign of {} ends before it starts",
                c.brand
            )));
        }
        campaigns.push(c);
    }

    // Per month: spend, campaigns, and spend per brand.
    let mut spend: BTreeMap<String, i64> = BTreeMap::new();
    let mut active: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_brand: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for c in &campaigns {
        let mut months = BTreeSet::new();
        for day in c.start..=c.end {
            let m = month_of_day(day);
            let s = c.spend_on(day);
            *spend.entry(m.clone()).or_default() += s;
            *by_brand
                .entry(m.clone())
                .or_default()
                .entry(c.brand.clone())
                .or_default() += s;
            months.insert(m);
        }
        for m in months {
            *active.entry(m).or_default() += 1;
        }
    }

    let events = ask(
        engine,
        "impressions and clicks per month, of all users and of people linked to the retailer",
        format!(
            "SELECT month, kind, linked, COUNT(*) AS events FROM {PROGRAM} WHERE kind <> 'conversion' GROUP BY month, kind, linked ORDER BY month, kind, linked"
        ),
        analyst,
        &mut log,
    )
    .await?;
    let conversions_expr = match settings.model {
        Model::Linear => "SUM(credit_ppm) AS conversions",
        _ => "COUNT(*) AS conversions",
    };
    let conv = ask(
        engine,
        "attributed conversions and GMV per month of the order",
        format!(
            "SELECT month, {conversions_expr}, SUM(credit_fen) AS gmv_fen FROM {PROGRAM} WHERE kind = 'conversion' GROUP BY month ORDER BY month"
        ),
        analyst,
        &mut log,
    )
    .await?;

    let mut months: BTreeSet<String> = spend.keys().cloned().collect();
    // Month → [impressions, clicks, linked impressions, linked clicks].
    let mut ev: BTreeMap<String, [Option<i64>; 4]> = BTreeMap::new();
    let (mi, ki, li, ni) = (
        events.col("month")?,
        events.col("kind")?,
        events.col("linked")?,
        events.col("events")?,
    );
    for r in events.rows() {
        let m = text(&r[mi]);
        let n = int(&r[ni], "events")?;
        let e = ev.entry(m.clone()).or_default();
        let slot = match text(&r[ki]).as_str() {
            "impression" => 0,
            "click" => 1,
            _ => continue,
        };
        let add = |x: &mut Option<i64>| *x = Some(x.unwrap_or(0) + n);
        add(&mut e[slot]);
        if text(&r[li]) == "yes" {
            add(&mut e[slot + 2]);
        }
        months.insert(m);
    }
    let mut cv: BTreeMap<String, (f64, i64)> = BTreeMap::new();
    let (mi, ci, gi) = (
        conv.col("month")?,
        conv.col("conversions")?,
        conv.col("gmv_fen")?,
    );
    for r in conv.rows() {
        let raw = int(&r[ci], "conversions")?;
        let n = match settings.model {
            Model::Linear => raw as f64 / WHOLE as f64,
            _ => raw as f64,
        };
        cv.insert(text(&r[mi]), (n, int(&r[gi], "gmv_fen")?));
        months.insert(text(&r[mi]));
    }

    let mut out: Vec<MonthFigures> = Vec::new();
    for m in months {
        let [imp, clk, limp, lclk] = ev.get(&m).copied().unwrap_or_default();
        let (conversions, gmv_fen) = match cv.get(&m) {
            Some((n, g)) => (Some(*n), Some(*g)),
            None => (None, None),
        };
        let per = |d: Option<i64>| match (conversions, d) {
            (Some(c), Some(d)) if d > 0 => Some(c / d as f64),
            _ => None,
        };
        let brands: Vec<String> = by_brand
            .get(&m)
            .map(|b| b.keys().cloned().collect())
            .unwrap_or_default();
        let spend_fen = spend.get(&m).copied().unwrap_or(0);
        let campaigns_active = active.get(&m).copied().unwrap_or(0);
        let cvr_click = per(lclk);
        let (mut returning_brand_share, mut returning_spend_share) = (None, None);
        let mut change_now = MonthChange::default();
        if let Some(last) = out.last() {
            let before: BTreeSet<&String> = last.brands.iter().collect();
            if !before.is_empty() {
                let back = brands.iter().filter(|b| before.contains(b)).count();
                returning_brand_share = Some(back as f64 / before.len() as f64);
            }
            if spend_fen > 0 {
                let from_returning: i64 = by_brand
                    .get(&m)
                    .map(|b| {
                        b.iter()
                            .filter(|(brand, _)| before.contains(brand))
                            .map(|(_, s)| *s)
                            .sum()
                    })
                    .unwrap_or(0);
                returning_spend_share = Some(from_returning as f64 / spend_fen as f64);
            }
            change_now = MonthChange {
                spend: change(Some(spend_fen as f64), Some(last.spend_fen as f64)),
                impressions: change(imp.map(|x| x as f64), last.impressions.map(|x| x as f64)),
                campaigns: change(Some(campaigns_active as f64), Some(last.campaigns as f64)),
                cvr_click: change(cvr_click, last.cvr_click),
            };
        }
        out.push(MonthFigures {
            month: m,
            spend_fen,
            campaigns: campaigns_active,
            brands,
            impressions: imp,
            clicks: clk,
            linked_impressions: limp,
            linked_clicks: lclk,
            conversions,
            gmv_fen,
            cvr_click,
            cvr_impression: per(limp),
            conversions_estimate_all: conversions
                .filter(|_| coverage.retail_match_rate > 0.0)
                .map(|c| c / coverage.retail_match_rate),
            change: change_now,
            returning_brand_share,
            returning_spend_share,
        });
    }
    let brands: BTreeSet<String> = campaigns.iter().map(|c| c.brand.clone()).collect();

    let mut notes = vec![
        format!(
            "conversions are credited by attribution settings {} ({}); compare months and reports only under the same version",
            settings.version(),
            settings.label()
        ),
        "spend, campaigns and brands come from the campaign table (not about people, released as it is); a campaign's spend is spread evenly over its days".into(),
        "CVR divides conversions by the clicks of people linked to the retailer; conversions and GMV count linked people only (lower bounds); conversions_estimate_all divides them by the retailer's match rate (an estimate that leans high)".into(),
    ];
    if log.iter().any(|r| r.release.mode == "dp") {
        let p = engine
            .policy()
            .tables
            .get(PROGRAM)
            .map(|t| t.privacy)
            .unwrap_or_default();
        notes.push(format!(
            "differential privacy bounds each person to {} group(s) of a query and {} rows per group: a person active in several months counts in one of them, so impressions, clicks and conversions are far too low; use threshold mode for program metrics, or a collaboration whose rules allow more groups per person",
            p.max_groups_per_person, p.max_rows_per_person
        ));
    }
    Ok(ProgramReport {
        settings: *settings,
        settings_version: settings.version(),
        settings_label: settings.label(),
        coverage,
        months: out,
        brands: brands.into_iter().collect(),
        notes,
        released: log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(2026, 1, 1), 20_454);
        assert_eq!(month_of_day(20_454), "2026-01");
        assert_eq!(month_of_day(20_454 + 31), "2026-02");
        assert_eq!(month_of_day(20_454 + 180), "2026-06");
        assert_eq!(parse_date("2026-03-24").unwrap(), 20_454 + 82);
        assert!(parse_date("2026-13-01").is_err());
    }

    #[test]
    fn spend_is_spread_with_the_remainder_first() {
        let c = Campaign {
            brand: "A".into(),
            start: 10,
            end: 12,
            spend_fen: 100,
        };
        assert_eq!(
            (9..=13).map(|d| c.spend_on(d)).collect::<Vec<_>>(),
            [0, 34, 33, 33, 0]
        );
    }
}
