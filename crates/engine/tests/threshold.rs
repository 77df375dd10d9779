//! Acceptance: in threshold mode every allowed query equals the same SQL run by plain
//! DataFusion over the same joined tables, with the groups covering fewer than k
//! people removed.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::HashMap;

use datafusion::prelude::SessionContext;
use jingteng_engine::{Limits, register_view, rows_of};
use serde_json::Value;

/// (query, the same grouping counting distinct people, number of group keys)
const CASES: &[(&str, &str, usize)] = &[
    (
        "SELECT age_band, gender, COUNT(*) AS users FROM social.users GROUP BY age_band, gender",
        "SELECT age_band, gender, COUNT(DISTINCT person) FROM social.users GROUP BY age_band, gender",
        2,
    ),
    (
        "SELECT category, brand, COUNT(*) AS orders, SUM(amount_fen) AS gmv, AVG(quantity) AS q FROM retail.orders GROUP BY category, brand",
        "SELECT category, brand, COUNT(DISTINCT person) FROM retail.orders GROUP BY category, brand",
        2,
    ),
    (
        "SELECT u.age_band, o.category, COUNT(*) AS orders, SUM(o.amount_fen) AS gmv FROM social.users u JOIN retail.orders o ON u.person = o.person GROUP BY u.age_band, o.category",
        "SELECT u.age_band, o.category, COUNT(DISTINCT o.person) FROM social.users u JOIN retail.orders o ON u.person = o.person GROUP BY u.age_band, o.category",
        2,
    ),
    (
        "SELECT n, COUNT(*) AS people FROM (SELECT person, COUNT(*) AS n FROM retail.orders GROUP BY person) t GROUP BY n",
        "SELECT n, COUNT(DISTINCT person) FROM (SELECT person, COUNT(*) AS n FROM retail.orders GROUP BY person) t GROUP BY n",
        1,
    ),
    (
        "SELECT c.campaign_id, e.placement, COUNT(*) AS events FROM social.exposures e JOIN social.campaigns c ON e.campaign_id = c.campaign_id WHERE e.kind = 'click' GROUP BY c.campaign_id, e.placement",
        "SELECT c.campaign_id, e.placement, COUNT(DISTINCT e.person) FROM social.exposures e JOIN social.campaigns c ON e.campaign_id = c.campaign_id WHERE e.kind = 'click' GROUP BY c.campaign_id, e.placement",
        2,
    ),
    (
        "SELECT b.tier, r.level, COUNT(*) AS people FROM brand.crm b, retail.users r WHERE b.person = r.person GROUP BY b.tier, r.level",
        "SELECT b.tier, r.level, COUNT(DISTINCT r.person) FROM brand.crm b, retail.users r WHERE b.person = r.person GROUP BY b.tier, r.level",
        2,
    ),
    (
        "SELECT date_trunc('week', ts) AS week, channel, COUNT(DISTINCT person) AS buyers, SUM(amount_fen) AS gmv FROM retail.orders WHERE brand = 'Aurora' GROUP BY date_trunc('week', ts), channel",
        "SELECT date_trunc('week', ts) AS week, channel, COUNT(DISTINCT person) FROM retail.orders WHERE brand = 'Aurora' GROUP BY date_trunc('week', ts), channel",
        2,
    ),
    (
        "SELECT COUNT(*) AS people FROM social.users s JOIN brand.crm b ON s.person = b.person",
        "SELECT COUNT(DISTINCT s.person) FROM social.users s JOIN brand.crm b ON s.person = b.person",
        0,
    ),
];

fn key(row: &[Value], n: usize) -> String {
    serde_json::to_string(&row[..n]).unwrap()
}

fn render(rows: &[Vec<Value>]) -> Vec<String> {
    let mut out: Vec<String> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| match v.as_f64() {
                    Some(f) if v.is_f64() => format!("{f:.6}"),
                    _ => v.to_string(),
                })
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    out.sort();
    out
}

async fn compare(seed: u64, people: u64) {
    let w = common::world(seed, people, "threshold").await;
    let engine = w.engine(Limits::default()).await;
    let plain = SessionContext::new();
    register_view(&plain, &w.state, &w.info).await.unwrap();
    let mut suppressed_somewhere = false;
    for (sql, people_sql, n) in CASES {
        let answer = engine.query(sql, "analyst").await.unwrap();
        let raw = plain.sql(sql).await.unwrap().collect().await.unwrap();
        let (_, raw) = rows_of(&raw).unwrap();
        let counts = plain
            .sql(people_sql)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let (_, counts) = rows_of(&counts).unwrap();
        let people: HashMap<String, i64> = counts
            .iter()
            .map(|r| (key(r, *n), r[*n].as_i64().unwrap()))
            .collect();
        let expected: Vec<Vec<Value>> = raw
            .into_iter()
            .filter(|r| people.get(&key(r, *n)).copied().unwrap_or(0) >= 50)
            .collect();
        let removed = people.values().filter(|p| **p < 50).count() as u64;
        assert_eq!(answer.release.suppressed_rows, Some(removed), "{sql}");
        suppressed_somewhere |= removed > 0;
        assert_eq!(
            render(&answer.rows),
            render(&expected),
            "seed {seed}: {sql}"
        );
    }
    assert!(suppressed_somewhere, "no case exercised suppression");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_mode_equals_plain_datafusion_minus_small_groups() {
    compare(3, 8_000).await;
    compare(11, 20_000).await;
}

/// The 4A funnel: per month, people at "act" or "advocate" are exactly the brand's
/// buyers that month, and "advocate" those with an earlier purchase (or two that month).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn funnel_buyers_equal_plain_counts() {
    let w = common::world(11, 20_000, "threshold").await;
    let mut engine = w.engine(Limits::default()).await;
    let steps = jingteng_engine::templates::funnel(&mut engine, "Aurora")
        .await
        .unwrap();
    let stages = engine.query(&steps[0].sql, "analyst").await.unwrap();
    let plain = SessionContext::new();
    register_view(&plain, &w.state, &w.info).await.unwrap();
    let buyers = plain
        .sql("SELECT CAST(date_trunc('month', ts) AS VARCHAR) AS m, COUNT(DISTINCT person) AS n FROM retail.orders WHERE brand = 'Aurora' GROUP BY 1")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let (_, buyers) = rows_of(&buyers).unwrap();
    let mut checked = 0;
    for b in &buyers {
        let month = b[0].as_str().unwrap();
        let n = b[1].as_i64().unwrap();
        let at = |stage: &str| {
            stages
                .rows
                .iter()
                .find(|r| r[0].as_str().unwrap().starts_with(&month[..10]) && r[1] == stage)
                .map(|r| r[2].as_i64().unwrap())
        };
        if let (Some(act), Some(adv)) = (at("act"), at("advocate")) {
            assert_eq!(act + adv, n, "{month}");
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} months checked");
    let flows = engine.query(&steps[1].sql, "analyst").await.unwrap();
    assert!(!flows.rows.is_empty());
}
