//! The attribution benchmark's two sides (`jingteng bench attribution`): this crate's
//! last-touch attribution through the engine, and the same report written
//! independently as plain DataFusion SQL over the same joined Parquet files, with the
//! check that both give the same figures. The CLI times each side in its own process.

use jingteng_engine::datafusion::prelude::SessionContext;
use jingteng_engine::{ReleaseMode, rows_of};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::attribution::{AttributionReport, AttributionSettings, Model};
use crate::{Error, Result};

/// One campaign's attribution figures, from either side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignFigures {
    /// The campaign.
    pub campaign_id: String,
    /// Attributed orders.
    pub conversions: f64,
    /// Their GMV, fen.
    pub gmv_fen: i64,
    /// Impression rows (all people).
    pub impressions: Option<i64>,
    /// Click rows.
    pub clicks: Option<i64>,
    /// Impression rows of people linked to the retailer.
    pub linked_impressions: Option<i64>,
    /// Click rows of linked people.
    pub linked_clicks: Option<i64>,
}

/// Last-touch attribution written from its definition (docs/measurement.md), as one
/// plain DataFusion query — an ordered `first_value` aggregate per order instead of the
/// engine-side derivation's window ranks: each order goes to the touch that sorts
/// first by (click before impression, latest, smallest campaign id) among the brand's
/// clicks in the click window and impressions in the view window before it; a
/// person's first `cap` credited orders in time order count.
pub fn plain_last_touch_sql(s: &AttributionSettings) -> Result<String> {
    if s.model != Model::LastTouch {
        return Err(Error::Input(
            "the plain-SQL attribution is written for last touch only".into(),
        ));
    }
    let (click, view, cap) = (s.click_window_s, s.view_window_s, s.cap);
    Ok(format!(
        "WITH o AS (
            SELECT person, to_unixtime(ts) AS s, brand, amount_fen,
                   row_number() OVER (PARTITION BY person ORDER BY ts, brand, sku, amount_fen, channel, store_id) AS k
            FROM retail.orders
        ),
        touch AS (
            SELECT e.person, c.brand, e.campaign_id, to_unixtime(e.ts) AS t,
                   CASE WHEN e.kind = 'click' THEN 1 ELSE 0 END AS click
            FROM social.exposures e JOIN social.campaigns c ON c.campaign_id = e.campaign_id
            WHERE e.kind IN ('click', 'impression')
        ),
        credited AS (
            SELECT o.person, o.k, MIN(o.amount_fen) AS amount_fen,
                   first_value(touch.campaign_id ORDER BY touch.click DESC, touch.t DESC, touch.campaign_id ASC) AS campaign_id
            FROM o JOIN touch ON touch.person = o.person AND touch.brand = o.brand
            WHERE touch.t < o.s
              AND o.s - touch.t <= CASE WHEN touch.click = 1 THEN {click} ELSE {view} END
            GROUP BY o.person, o.k
        ),
        capped AS (
            SELECT campaign_id, amount_fen, row_number() OVER (PARTITION BY person ORDER BY k) AS nth
            FROM credited
        )
        SELECT campaign_id, COUNT(*) AS conversions, SUM(amount_fen) AS gmv_fen
        FROM capped WHERE nth <= {cap}
        GROUP BY campaign_id ORDER BY campaign_id"
    ))
}

/// The attribution report's figures by plain DataFusion over a session where the
/// view's tables are registered (`jingteng_engine::register_view`): campaigns,
/// attributed conversions and GMV, impressions and clicks of everyone and of people
/// linked to the retailer — no privacy check, no release.
pub async fn plain_attribution(
    ctx: &SessionContext,
    settings: &AttributionSettings,
) -> Result<Vec<CampaignFigures>> {
    let collect = |sql: String| async move {
        let batches = ctx.sql(&sql).await?.collect().await?;
        Ok::<_, Error>(rows_of(&batches)?.1)
    };
    let campaigns = collect(
        "SELECT campaign_id, SUM(spend_fen) AS spend_fen FROM social.campaigns GROUP BY campaign_id ORDER BY campaign_id".into(),
    )
    .await?;
    let attributed = collect(plain_last_touch_sql(settings)?).await?;
    let all = collect(
        "SELECT campaign_id, kind, COUNT(*) AS events FROM social.exposures GROUP BY campaign_id, kind".into(),
    )
    .await?;
    let linked = collect(
        "SELECT e.campaign_id, e.kind, COUNT(*) AS events FROM social.exposures e JOIN retail.users r ON e.person = r.person GROUP BY e.campaign_id, e.kind".into(),
    )
    .await?;
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    let mut out: Vec<CampaignFigures> = campaigns
        .iter()
        .map(|r| CampaignFigures {
            campaign_id: s(&r[0]),
            conversions: 0.0,
            gmv_fen: 0,
            impressions: None,
            clicks: None,
            linked_impressions: None,
            linked_clicks: None,
        })
        .collect();
    for r in &attributed {
        let Some(c) = out.iter_mut().find(|c| c.campaign_id == s(&r[0])) else {
            return Err(Error::Internal(format!(
                "plain attribution credited an unknown campaign {}",
                s(&r[0])
            )));
        };
        c.conversions = n(&r[1]) as f64;
        c.gmv_fen = n(&r[2]);
    }
    for (rows, is_linked) in [(&all, false), (&linked, true)] {
        for r in rows {
            let Some(c) = out.iter_mut().find(|c| c.campaign_id == s(&r[0])) else {
                continue;
            };
            let v = Some(n(&r[2]));
            match (s(&r[1]).as_str(), is_linked) {
                ("impression", false) => c.impressions = v,
                ("click", false) => c.clicks = v,
                ("impression", true) => c.linked_impressions = v,
                ("click", true) => c.linked_clicks = v,
                _ => {}
            }
        }
    }
    Ok(out)
}

/// The released campaigns of an engine report, as [`CampaignFigures`].
pub fn released_figures(report: &AttributionReport) -> Vec<CampaignFigures> {
    report
        .campaigns
        .iter()
        .filter(|c| c.released)
        .map(|c| CampaignFigures {
            campaign_id: c.campaign_id.clone(),
            conversions: c.conversions,
            gmv_fen: c.gmv_fen,
            impressions: c.impressions,
            clicks: c.clicks,
            linked_impressions: c.linked_impressions,
            linked_clicks: c.linked_clicks,
        })
        .collect()
}

/// An error unless every campaign the engine released has exactly the plain figures
/// (threshold mode releases exact values; an impression or click count the engine
/// left out is not compared). Also an error when the engine released nothing.
pub fn check_equal(plain: &[CampaignFigures], engine: &[CampaignFigures]) -> Result<()> {
    if engine.is_empty() {
        return Err(Error::Input(
            "the engine released no campaign: nothing to compare".into(),
        ));
    }
    for e in engine {
        let Some(p) = plain.iter().find(|p| p.campaign_id == e.campaign_id) else {
            return Err(Error::Internal(format!(
                "campaign {} is in the engine's report but not in plain DataFusion's",
                e.campaign_id
            )));
        };
        let same = |a: Option<i64>, b: Option<i64>| a.is_none() || a == b;
        if e.conversions != p.conversions
            || e.gmv_fen != p.gmv_fen
            || !same(e.impressions, p.impressions)
            || !same(e.clicks, p.clicks)
            || !same(e.linked_impressions, p.linked_impressions)
            || !same(e.linked_clicks, p.linked_clicks)
        {
            return Err(Error::Internal(format!(
                "the engine's attribution differs from plain DataFusion's for campaign {}: engine {e:?}, plain {p:?}",
                e.campaign_id
            )));
        }
    }
    Ok(())
}

/// A collaboration spec's text with every party's release mode set to `mode`, parsed
/// (an error if any party ends up in another mode).
pub fn collab_in_mode(text: &str, mode: ReleaseMode) -> Result<jingteng_psi::Collaboration> {
    let name = match mode {
        ReleaseMode::Dp => "dp",
        ReleaseMode::Threshold => "threshold",
    };
    let text: String = text
        .lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with("mode =") || t.starts_with("mode=") {
                format!("mode = \"{name}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let collab = jingteng_psi::Collaboration::parse(&text)
        .map_err(|e| Error::Input(format!("the spec with mode = {name:?}: {e}")))?;
    if collab.parties().iter().any(|p| p.privacy.mode != mode) {
        return Err(Error::Input(format!(
            "could not set every party's release mode to {name} (a party without a mode line?)"
        )));
    }
    Ok(collab)
}

/// What one side's run reports (the CLI runs each side in its own process and reads
/// this back as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SideRun {
    /// `plain`, `engine-threshold` or `engine-dp`.
    pub side: String,
    /// Seconds of the attribution report, after opening the view.
    pub seconds: f64,
    /// Resident memory of the process when the timed work started, bytes.
    pub start_rss_bytes: u64,
    /// Peak resident memory of the process (`VmHWM`), bytes.
    pub peak_rss_bytes: u64,
    /// Per campaign (the engine side: the campaigns it released).
    pub campaigns: Vec<CampaignFigures>,
    /// Campaigns the engine left out (threshold or DP group selection).
    pub suppressed: usize,
}

/// One side's timings over the repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct SideSummary {
    /// `plain`, `engine-threshold` or `engine-dp`.
    pub side: String,
    /// Median seconds.
    pub median_seconds: f64,
    /// Every run's seconds.
    pub seconds: Vec<f64>,
    /// Highest peak resident memory of its processes, bytes.
    pub peak_rss_bytes: u64,
    /// Resident memory when the timed work started (the last run), bytes.
    pub start_rss_bytes: u64,
    /// Campaigns in its report (the engine: released).
    pub released_campaigns: usize,
    /// Campaigns the engine left out.
    pub suppressed: usize,
}

/// The attribution benchmark's result.
#[derive(Debug, Clone, Serialize)]
pub struct AttributionBench {
    /// Rows of `social.exposures` in the view.
    pub exposure_rows: u64,
    /// Rows of `retail.orders`.
    pub order_rows: u64,
    /// Attributed orders (plain DataFusion's figure, all campaigns).
    pub attributed_orders: f64,
    /// Their GMV, fen.
    pub attributed_gmv_fen: i64,
    /// Per side.
    pub sides: Vec<SideSummary>,
    /// Engine in threshold mode / plain DataFusion, medians.
    pub ratio_threshold: f64,
    /// Engine in DP mode / plain DataFusion, medians.
    pub ratio_dp: f64,
    /// Per repetition: engine (threshold, DP) / plain of that repetition's runs.
    pub rep_ratios: Vec<[f64; 2]>,
    /// Threshold mode: every released campaign's conversions, GMV, impressions and
    /// clicks equal plain DataFusion's (the benchmark stops with an error otherwise).
    pub threshold_figures_equal: bool,
}
