//! Acceptance for reach and frequency across media parties:
//! - threshold mode on a `--media 2` world equals truth.json's `reach.ID.matched`
//!   exactly, and equals a plain reference written here over the joined view's Parquet
//!   files (no DataFusion query); with one media party it equals the campaign's reach;
//! - DP at ε = 1: over 100 releases of a campaign reaching 36,000 people, the released
//!   reach is within 5% relative error in at least 95 of them (the people table is
//!   built synthetically in the engine: a world that size is too slow in a debug
//!   build).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::{BTreeMap, HashMap};

use jingteng_engine::policy::{ColumnRule, Role};
use jingteng_measure::{
    CampaignId, CampaignReach, Error, FREQUENCY_BUCKETS, REACH, media_parties, reach, release_reach,
};
use serde_json::Value;

/// (campaign, person) → impressions per party, from the view's Parquet files.
fn reference(w: &common::World, parties: &[&str]) -> BTreeMap<String, Vec<Vec<u64>>> {
    let mut seen: HashMap<(String, i64), Vec<u64>> = HashMap::new();
    for (i, p) in parties.iter().enumerate() {
        let t = w.table(&format!("{p}.exposures"));
        let (person, campaign, kind) = (
            t.ints("person"),
            t.strings("campaign_id"),
            t.strings("kind"),
        );
        for r in 0..t.len() {
            if kind[r] != "impression" {
                continue;
            }
            seen.entry((campaign[r].clone(), person[r].unwrap()))
                .or_insert_with(|| vec![0; parties.len()])[i] += 1;
        }
    }
    let mut out: BTreeMap<String, Vec<Vec<u64>>> = BTreeMap::new();
    for ((c, _), counts) in seen {
        out.entry(c).or_default().push(counts);
    }
    out
}

/// Figures of one campaign from the reference: dedup, per party reach, per party
/// incremental, overlap, histogram.
struct Expected {
    deduplicated: u64,
    reach: Vec<u64>,
    incremental: Vec<u64>,
    overlap: u64,
    frequency: [u64; 10],
}

fn expected(people: &[Vec<u64>]) -> Expected {
    let n = people.first().map_or(0, Vec::len);
    let mut e = Expected {
        deduplicated: people.len() as u64,
        reach: vec![0; n],
        incremental: vec![0; n],
        overlap: 0,
        frequency: [0; 10],
    };
    for counts in people {
        let on: Vec<bool> = counts.iter().map(|c| *c > 0).collect();
        for i in 0..n {
            e.reach[i] += u64::from(on[i]);
            e.incremental[i] += u64::from(on[i] && on.iter().filter(|x| **x).count() == 1);
        }
        e.overlap += u64::from(on.iter().filter(|x| **x).count() >= 2);
        let total: u64 = counts.iter().sum();
        e.frequency[(total.min(10) - 1) as usize] += 1;
    }
    e
}

fn histogram(c: &CampaignReach) -> Vec<Option<i64>> {
    c.frequency.iter().map(|b| b.people).collect()
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_reach_equals_truth_and_the_reference() {
    let k = 2;
    let w = common::world_with(21, 6_000, "threshold", k, 2, None).await;
    let truth = w.truth();
    let mut engine = w.engine().await;
    let parties = media_parties(&engine, &w.info);
    assert_eq!(parties, ["social", "news"]);
    let report = reach(&mut engine, &w.info, &parties, None, "tester")
        .await
        .unwrap();
    assert!(report.coverage.linked.unwrap() > 0);
    assert!(report.coverage.caveat.contains("upper bounds"));
    let refs = reference(&w, &["social", "news"]);
    let mut checked = 0;
    let mut differs_from_all = 0;
    for (id, t) in truth["reach"].as_object().unwrap() {
        let m = &t["matched"];
        let c = report
            .campaigns
            .iter()
            .find(|c| &c.campaign_id == id)
            .unwrap_or_else(|| panic!("{id} released"));
        let e = expected(&refs[id]);
        // Truth, as a perfect match lets the room count.
        assert_eq!(c.deduplicated as u64, u(&m["deduplicated"]), "{id} de-dup.");
        assert_eq!(c.parties[0].reach as u64, u(&m["social"]), "{id} social");
        assert_eq!(c.parties[1].reach as u64, u(&m["news"]), "{id} news");
        assert_eq!(
            c.parties[0].incremental.unwrap() as u64,
            u(&m["incremental_social"]),
            "{id}"
        );
        assert_eq!(
            c.parties[1].incremental.unwrap() as u64,
            u(&m["incremental_news"]),
            "{id}"
        );
        assert_eq!(c.overlap.unwrap() as u64, u(&m["overlap"]), "{id} overlap");
        // The reference over the view's files.
        assert_eq!(c.deduplicated as u64, e.deduplicated, "{id}");
        assert_eq!(
            c.parties.iter().map(|p| p.reach as u64).collect::<Vec<_>>(),
            e.reach
        );
        assert_eq!(
            c.parties
                .iter()
                .map(|p| p.incremental.unwrap() as u64)
                .collect::<Vec<_>>(),
            e.incremental
        );
        assert_eq!(c.overlap.unwrap() as u64, e.overlap);
        for (i, b) in histogram(c).iter().enumerate() {
            let truth_b = u(&m["frequency"][i]);
            assert_eq!(e.frequency[i], truth_b, "{id} bucket {i}");
            match b {
                Some(n) => assert_eq!(*n as u64, truth_b, "{id} bucket {}", FREQUENCY_BUCKETS[i]),
                None => assert!(truth_b < k, "{id}: bucket {i} of {truth_b} left out"),
            }
        }
        // The match splits some people exposed on both parties.
        differs_from_all += usize::from(m["deduplicated"] != t["all"]["deduplicated"]);
        checked += 1;
    }
    assert_eq!(checked, 30);
    assert!(
        differs_from_all > 0,
        "the match links everyone: a weak test"
    );

    // One campaign; and an unknown one.
    let c = CampaignId::parse("C07").unwrap();
    let one = reach(&mut engine, &w.info, &parties, Some(&c), "tester")
        .await
        .unwrap();
    assert_eq!(one.campaigns.len(), 1);
    assert_eq!(
        one.campaigns[0].deduplicated as u64,
        u(&truth["reach"]["C07"]["matched"]["deduplicated"])
    );
    let bad = CampaignId::parse("C99").unwrap();
    let err = reach(&mut engine, &w.info, &parties, Some(&bad), "tester")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Input(_)), "{err}");
    assert!(err.to_string().contains("no campaign C99"), "{err}");

    // One media party: no de-duplication, the campaign's reach and frequency.
    let social = vec!["social".to_string()];
    let alone = reach(&mut engine, &w.info, &social, None, "tester")
        .await
        .unwrap();
    assert!(alone.coverage.caveat.contains("one media party"));
    for c in &alone.campaigns {
        let t = &truth["campaigns"][&c.campaign_id]["all"];
        assert_eq!(c.deduplicated as u64, u(&t["reach"]));
        assert_eq!(c.parties[0].reach, c.deduplicated);
        assert!(c.parties[0].incremental.is_none() && c.overlap.is_none());
        for (i, b) in histogram(c).iter().enumerate() {
            if let Some(n) = b {
                assert_eq!(*n as u64, u(&t["frequency"][i]));
            }
        }
    }
    assert_eq!(alone.campaigns.len(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reach_of_a_world_with_one_media_party() {
    let w = common::world(22, 5_000, "threshold", 2).await;
    let truth = w.truth();
    let mut engine = w.engine().await;
    let parties = media_parties(&engine, &w.info);
    assert_eq!(parties, ["social"]);
    let report = reach(&mut engine, &w.info, &parties, None, "tester")
        .await
        .unwrap();
    assert_eq!(report.campaigns.len(), 30);
    for c in &report.campaigns {
        assert_eq!(
            c.deduplicated as u64,
            u(&truth["campaigns"][&c.campaign_id]["all"]["reach"])
        );
    }
}

/// The rules `measure.reach` registers with (social and news), written out here.
fn rules() -> Vec<(String, ColumnRule)> {
    let rule = |role, bounds| ColumnRule {
        role,
        bounds,
        aggregates: if role == Role::Measure {
            vec!["count".into(), "sum".into(), "avg".into()]
        } else {
            Vec::new()
        },
    };
    let mut columns = vec![
        ("person".to_string(), rule(Role::Person, None)),
        ("campaign_id".into(), rule(Role::Dimension, None)),
        ("frequency".into(), rule(Role::Dimension, None)),
        ("impressions".into(), rule(Role::Measure, Some((0, 10)))),
    ];
    for c in ["on_social", "on_news", "only_social", "only_news"] {
        columns.push((c.into(), rule(Role::Measure, Some((0, 1)))));
    }
    columns
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dp_reach_of_36k_people_is_within_5_percent_in_95_of_100_runs() {
    // Every party in DP mode at ε = 1 per query; the people table is synthetic: 36,000
    // people reached by campaign C99, a third on social only, a third on news only, a
    // third on both, 3,600 in each frequency bucket.
    let w = common::world_with(23, 2_000, "dp", 50, 2, Some(1.0)).await;
    let mut engine = w.engine().await;
    let people = 36_000i64;
    let plan = engine
        .session()
        .sql(&format!(
            "SELECT arrow_cast(value, 'UInt64') AS person, arrow_cast('C99', 'Utf8') AS campaign_id,
                    arrow_cast(CASE WHEN value % 10 = 9 THEN '10+' ELSE CAST(value % 10 + 1 AS VARCHAR) END, 'Utf8') AS frequency,
                    CAST(value % 10 + 1 AS BIGINT) AS impressions,
                    CAST(CASE WHEN value % 3 <> 2 THEN 1 ELSE 0 END AS BIGINT) AS on_social,
                    CAST(CASE WHEN value % 3 <> 0 THEN 1 ELSE 0 END AS BIGINT) AS on_news,
                    CAST(CASE WHEN value % 3 = 0 THEN 1 ELSE 0 END AS BIGINT) AS only_social,
                    CAST(CASE WHEN value % 3 = 2 THEN 1 ELSE 0 END AS BIGINT) AS only_news
             FROM generate_series(0, {}) AS t(value)",
            people - 1
        ))
        .await
        .unwrap()
        .into_unoptimized_plan();
    engine
        .register_derived(
            REACH,
            plan,
            rules(),
            false,
            &["social.exposures", "news.exposures"],
        )
        .await
        .unwrap();
    let parties = vec!["social".to_string(), "news".to_string()];
    let c = CampaignId::parse("C99").unwrap();
    let runs = 100;
    let (mut dedup_ok, mut party_ok, mut bucket_ok) = (0, 0, 0);
    let mut distinct = std::collections::HashSet::new();
    for run in 0..runs {
        // A fresh analyst per run: a new budget and no cached answer, so new noise.
        let mut log = Vec::new();
        let (out, _) = release_reach(&engine, &parties, Some(&c), &format!("a{run}"), &mut log)
            .await
            .unwrap();
        assert!(log.iter().all(|r| r.release.mode == "dp" && !r.cached));
        assert_eq!(log[0].release.epsilon, Some(1.0));
        let r = &out[0];
        assert!(r.noise_people > 0.0 && r.noise_party > 0.0);
        distinct.insert(r.deduplicated);
        let rel = |x: i64, truth: i64| ((x - truth) as f64 / truth as f64).abs();
        dedup_ok += usize::from(rel(r.deduplicated, people) <= 0.05);
        party_ok += usize::from(
            r.parties
                .iter()
                .all(|p| rel(p.reach, people * 2 / 3) <= 0.05)
                && r.parties
                    .iter()
                    .all(|p| rel(p.incremental.unwrap(), people / 3) <= 0.05),
        );
        bucket_ok += usize::from(
            r.frequency
                .iter()
                .all(|b| b.people.is_some_and(|n| rel(n, people / 10) <= 0.05)),
        );
    }
    assert!(
        distinct.len() > 1,
        "no noise: every run released the same reach"
    );
    assert!(
        dedup_ok >= 95,
        "de-duplicated reach within 5% in {dedup_ok} of {runs} runs"
    );
    assert!(
        party_ok >= 95,
        "per-party reach within 5% in {party_ok} of {runs} runs"
    );
    assert!(
        bucket_ok >= 95,
        "frequency buckets within 5% in {bucket_ok} of {runs} runs"
    );
}
