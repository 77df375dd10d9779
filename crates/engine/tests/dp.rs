//! Differential-privacy mode end to end: answers near the truth within their stated
//! noise, the budget ledger (reserve, charge, refund, cache, exhaustion), and that
//! differencing two queries costs both.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::HashMap;

use jingteng_engine::{Error, Limits};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dp_answers_budget_cache_and_refund() {
    let w = common::world(5, 12_000, "dp").await;
    let engine = w.engine(Limits::default()).await;
    let exact = common::world(5, 12_000, "threshold").await;
    let exact_engine = exact.engine(Limits::default()).await;

    let sql = "SELECT age_band, COUNT(DISTINCT o.person) AS people, SUM(amount_fen) AS gmv FROM retail.orders o JOIN retail.users u ON o.person = u.person GROUP BY age_band";
    let truth = exact_engine.query(sql, "t").await.unwrap();
    let truth: HashMap<String, i64> = truth
        .rows
        .iter()
        .map(|r| (r[0].to_string(), r[1].as_i64().unwrap()))
        .collect();

    let a = engine.query(sql, "alice").await.unwrap();
    assert_eq!(a.release.mode, "dp");
    assert!(!a.cached);
    let budget = a.budget.clone().unwrap();
    assert!((budget.spent - 0.5).abs() < 1e-9, "{budget:?}");
    assert!((budget.remaining - 9.5).abs() < 1e-9);
    let people_noise = a
        .release
        .noise
        .iter()
        .find(|n| n.column == "people")
        .unwrap();
    let bound = people_noise.bound95.unwrap();
    assert!(bound > 0.0);
    assert!(!a.rows.is_empty());
    for r in &a.rows {
        let t = truth[&r[0].to_string()];
        let got = r[1].as_i64().unwrap();
        // Far beyond the 95% bound only with negligible probability.
        assert!(
            (got - t).abs() as f64 <= 4.0 * bound + 1.0,
            "{got} vs {t} (bound {bound})"
        );
    }

    // An identical re-run comes from the cache, free.
    let again = engine.query(sql, "alice").await.unwrap();
    assert!(again.cached);
    assert_eq!(again.rows, a.rows);
    assert!((again.budget.unwrap().spent - 0.5).abs() < 1e-9);

    // Differencing: the second query of the pair is charged too.
    let diff = "SELECT age_band, COUNT(DISTINCT o.person) AS people, SUM(amount_fen) AS gmv FROM retail.orders o JOIN retail.users u ON o.person = u.person WHERE u.region <> 'Beijing' GROUP BY age_band";
    let b = engine.query(diff, "alice").await.unwrap();
    assert!((b.budget.unwrap().spent - 1.0).abs() < 1e-9);

    // Spend the rest, then the next query is refused with the budget shown.
    for i in 0..18 {
        let q = format!(
            "SELECT channel, COUNT(*) AS orders FROM retail.orders WHERE quantity >= 1 AND amount_fen > {i} GROUP BY channel"
        );
        engine.query(&q, "alice").await.unwrap();
    }
    match engine
        .query(
            "SELECT channel, COUNT(*) FROM retail.orders GROUP BY channel",
            "alice",
        )
        .await
    {
        Err(Error::BudgetExhausted {
            remaining, limit, ..
        }) => {
            assert!(remaining.abs() < 1e-9);
            assert!((limit - 10.0).abs() < 1e-9);
        }
        other => panic!("expected budget-exhausted, got {other:?}"),
    }
    // Another analyst has a budget of their own.
    engine
        .query(
            "SELECT channel, COUNT(*) FROM retail.orders GROUP BY channel",
            "bob",
        )
        .await
        .unwrap();

    // Aggregates with no DP form are refused under DP.
    match engine.query("SELECT channel, SUM(CASE WHEN quantity > 1 THEN 1 ELSE 0 END) FROM retail.orders GROUP BY channel", "bob").await {
        Err(Error::Refused(r)) => assert_eq!(r.rule, "dp-unsupported"),
        other => panic!("expected dp-unsupported, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_query_is_refunded() {
    let w = common::world(6, 5_000, "dp").await;
    let tight = w
        .engine(Limits {
            memory_bytes: 16 << 10,
            timeout: std::time::Duration::from_secs(60),
        })
        .await;
    let sql = "SELECT e.placement, COUNT(DISTINCT e.person) FROM social.exposures e JOIN social.users u ON e.person = u.person GROUP BY e.placement";
    let err = tight.query(sql, "carol").await.unwrap_err();
    assert!(matches!(err, Error::ResourceLimit(_)), "{err}");
    assert_eq!(tight.budget("carol", 10.0).unwrap().spent, 0.0);
}
