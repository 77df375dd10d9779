//! `jingteng bench query`: what the privacy layer costs. Over one joined view it times
//! the policy check, and each insight query through the engine against the same SQL
//! run by plain DataFusion over the same Parquet files, alternating the two in one run
//! so the ratio holds on a shared, noisy machine.

use std::path::Path;
use std::time::Instant;

use datafusion::prelude::SessionContext;
use jingteng_catalog::Catalog;
use jingteng_psi::ReleaseMode;
use serde::Serialize;

use crate::{Engine, Limits, Result, ViewInfo, check, register_view};

/// The insight queries timed: over the exposures (≥ 20 M rows in the `medium` world)
/// and the orders.
pub const QUERIES: &[(&str, &str)] = &[
    (
        "reach and events by brand and kind",
        "SELECT c.brand, e.kind, COUNT(*) AS events, COUNT(DISTINCT e.person) AS people FROM social.exposures e JOIN social.campaigns c ON e.campaign_id = c.campaign_id GROUP BY c.brand, e.kind",
    ),
    (
        "reach by placement and age band",
        "SELECT e.placement, u.age_band, COUNT(DISTINCT e.person) AS reach FROM social.exposures e JOIN social.users u ON e.person = u.person GROUP BY e.placement, u.age_band",
    ),
    (
        "impressions by campaign",
        "SELECT campaign_id, COUNT(*) AS impressions FROM social.exposures WHERE kind = 'impression' GROUP BY campaign_id",
    ),
    (
        "orders and GMV by category",
        "SELECT category, COUNT(*) AS orders, SUM(amount_fen) AS gmv FROM retail.orders GROUP BY category",
    ),
];

/// One query's timings.
#[derive(Debug, Clone, Serialize)]
pub struct QueryTiming {
    /// What it asks.
    pub name: String,
    /// Median seconds through the engine (check + release + rest).
    pub engine_seconds: f64,
    /// Median seconds for the same SQL on plain DataFusion.
    pub plain_seconds: f64,
    /// engine / plain.
    pub ratio: f64,
}

/// The benchmark's result.
#[derive(Debug, Clone, Serialize)]
pub struct QueryBench {
    /// Release mode measured.
    pub mode: String,
    /// Rows of `social.exposures` in the view.
    pub exposure_rows: u64,
    /// Rows of `retail.orders`.
    pub order_rows: u64,
    /// Mean microseconds to check an already planned query.
    pub check_micros: f64,
    /// Mean microseconds to parse, plan and check a query.
    pub plan_and_check_micros: f64,
    /// Per query.
    pub queries: Vec<QueryTiming>,
    /// Sum of engine medians over sum of plain medians.
    pub total_ratio: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the benchmark over a built view in `dir`, in `mode`, `reps` timed runs each.
pub async fn run(
    collab: &jingteng_psi::Collaboration,
    dir: &Path,
    info: &ViewInfo,
    mode: ReleaseMode,
    reps: usize,
) -> Result<QueryBench> {
    let mut engine =
        Engine::open(collab, dir, info, Catalog::in_memory()?, Limits::default()).await?;
    for t in engine.policy.tables.values_mut() {
        t.privacy.mode = mode;
        // Every timed run is a fresh release, never a cache hit or a spent budget.
        t.privacy.budget = 100.0;
        t.privacy.epsilon = 100.0 / (2 * QUERIES.len() * (reps + 1)) as f64;
    }
    let plain = SessionContext::new();
    register_view(&plain, dir, info).await?;

    // The check alone, and parse + plan + check.
    let n = 200;
    let mut check_total = 0.0;
    let started = Instant::now();
    for i in 0..n {
        let (_, sql) = QUERIES[i % QUERIES.len()];
        let plan = engine.ctx.state().create_logical_plan(sql).await?;
        let t = Instant::now();
        check::check(&engine.policy, &plan)?;
        check_total += t.elapsed().as_secs_f64();
    }
    let plan_and_check = started.elapsed().as_secs_f64() / n as f64;

    let mut queries = Vec::new();
    for (qi, (name, sql)) in QUERIES.iter().enumerate() {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for rep in 0..=reps {
            // A different analyst each time: no cache, no budget in the way.
            let analyst = format!("bench-{qi}-{rep}");
            let t = Instant::now();
            engine.query(sql, &analyst).await?;
            let e = t.elapsed().as_secs_f64();
            let t = Instant::now();
            plain.sql(sql).await?.collect().await?;
            let p = t.elapsed().as_secs_f64();
            if rep > 0 {
                ours.push(e);
                theirs.push(p);
            }
        }
        let (e, p) = (median(ours), median(theirs));
        queries.push(QueryTiming {
            name: name.to_string(),
            engine_seconds: e,
            plain_seconds: p,
            ratio: e / p,
        });
    }
    let rows = |name: &str| {
        info.tables
            .iter()
            .find(|t| t.name == name)
            .map_or(0, |t| t.rows)
    };
    let total_ratio = queries.iter().map(|q| q.engine_seconds).sum::<f64>()
        / queries.iter().map(|q| q.plain_seconds).sum::<f64>();
    Ok(QueryBench {
        mode: match mode {
            ReleaseMode::Dp => "dp".into(),
            ReleaseMode::Threshold => "threshold".into(),
        },
        exposure_rows: rows("social.exposures"),
        order_rows: rows("retail.orders"),
        check_micros: check_total / n as f64 * 1e6,
        plan_and_check_micros: plan_and_check * 1e6,
        queries,
        total_ratio,
    })
}
