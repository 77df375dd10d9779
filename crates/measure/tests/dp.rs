//! DP mode: the same reports run under differential privacy; the noise scales the
//! engine states reach the lift intervals, and the budget is charged per query.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use jingteng_measure::stats::{self, Proportion};
use jingteng_measure::{AttributionSettings, CampaignId, LiftSettings, Sources, attribute, lift};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dp_lift_intervals_include_the_noise() {
    let w = common::world(5, 8_000, "dp", 50).await;
    let mut engine = w.engine().await;
    let c = CampaignId::parse("C02").unwrap();
    let report = lift(
        &mut engine,
        &w.info,
        &LiftSettings::default(),
        &Sources::default(),
        Some(&c),
        "tester",
    )
    .await
    .unwrap();
    assert_eq!(report.campaigns.len(), 1);
    let l = &report.campaigns[0];
    let dp = report
        .released
        .iter()
        .find(|r| r.release.mode == "dp")
        .unwrap();
    assert_eq!(dp.release.epsilon, Some(0.5));
    let t = l
        .test
        .as_ref()
        .expect("the test group clears the DP threshold");
    assert!(t.noise[0] > 0.0 && t.noise[1] > 0.0);
    // The control group may be left out, or its noisy size not positive: then no interval.
    if let (Some(k), Some(d)) = (&l.control, l.itt_difference) {
        let exact = stats::newcombe_difference(
            &Proportion::exact(t.converters.clamp(0, t.people) as u64, t.people as u64),
            &Proportion::exact(k.converters.clamp(0, k.people) as u64, k.people as u64),
            stats::z_two_sided(0.95),
        );
        assert!(d.high - d.low > exact.high - exact.low);
        assert!(d.low <= d.estimate && d.estimate <= d.high);
    }
    // Attribution under DP runs and is charged; a re-run is served from the cache.
    let settings = AttributionSettings::default();
    let a = attribute(
        &mut engine,
        &w.info,
        &settings,
        &Sources::default(),
        Some(&c),
        &[],
        "tester",
    )
    .await
    .unwrap();
    let spent = a
        .released
        .iter()
        .rev()
        .find_map(|r| r.budget.clone())
        .unwrap()
        .spent;
    assert!(spent >= 1.0, "{spent}");
    let again = attribute(
        &mut engine,
        &w.info,
        &settings,
        &Sources::default(),
        Some(&c),
        &[],
        "tester",
    )
    .await
    .unwrap();
    assert!(
        again
            .released
            .iter()
            .filter(|r| r.release.mode == "dp")
            .all(|r| r.cached)
    );
}
