//! The value interval of lift (threshold mode: the released sum of squared GMV equals
//! the one computed from the view's files, and the interval is the bootstrap of exact
//! figures), and the attribution benchmark's plain-DataFusion side (same figures as the
//! engine's report; a difference is caught).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use jingteng_engine::datafusion::prelude::SessionContext;
use jingteng_measure::stats::{ValueMoments, value_bootstrap};
use jingteng_measure::{AttributionSettings, LiftSettings, Sources, attribute, bench, lift};

const DAY: i64 = 86_400;
const OFFSET: i64 = 8 * 3_600;

/// (campaign, grp) → (people, Σ GMV, Σ GMV²) of linked people, from the files.
fn reference(w: &common::World) -> BTreeMap<(String, String), (i64, i64, i128)> {
    let campaigns = common::campaigns(w);
    let retail: HashSet<i64> = w
        .table("retail.users")
        .ints("person")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let o = w.table("retail.orders");
    let (op, ot, ob, oa) = (
        o.ints("person"),
        o.ints("ts"),
        o.strings("brand"),
        o.ints("amount_fen"),
    );
    let mut orders: HashMap<i64, Vec<(i64, String, i64)>> = HashMap::new();
    for i in 0..o.len() {
        orders.entry(op[i].unwrap()).or_default().push((
            ot[i].unwrap(),
            ob[i].clone(),
            oa[i].unwrap(),
        ));
    }
    let h = w.table("social.holdout");
    let (hp, hc, hg) = (h.ints("person"), h.strings("campaign_id"), h.strings("grp"));
    let mut groups = BTreeMap::new();
    for i in 0..h.len() {
        let person = hp[i].unwrap();
        if !retail.contains(&person) {
            continue;
        }
        let (brand, start, end) = &campaigns[&hc[i]];
        let (from, to) = (start * DAY - OFFSET, (end + 1 + 7) * DAY - OFFSET);
        let v: i64 = orders.get(&person).map_or(0, |l| {
            l.iter()
                .filter(|(ts, b, _)| b == brand && *ts >= from && *ts < to)
                .map(|x| x.2)
                .sum()
        });
        let g: &mut (i64, i64, i128) = groups.entry((hc[i].clone(), hg[i].clone())).or_default();
        g.0 += 1;
        g.1 += v;
        g.2 += i128::from(v) * i128::from(v);
    }
    groups
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_value_interval_and_plain_attribution() {
    let w = common::world(3, 8_000, "threshold", 2).await;
    let groups = reference(&w);
    let mut engine = w.engine().await;
    let settings = LiftSettings::default();
    let report = lift(
        &mut engine,
        &w.info,
        &settings,
        &Sources::default(),
        None,
        "tester",
    )
    .await
    .unwrap();
    assert_eq!(report.value_sq_unit_fen, 1);
    let mut checked = 0;
    for c in &report.campaigns {
        let (Some(t), Some(k)) = (&c.test, &c.control) else {
            continue;
        };
        let rt = groups[&(c.campaign_id.clone(), "test".to_string())];
        let rk = groups[&(c.campaign_id.clone(), "control".to_string())];
        assert_eq!((t.people, t.gmv_fen), (rt.0, rt.1));
        assert_eq!(t.gmv_squares, rt.2 as f64, "{}", c.campaign_id);
        assert_eq!(k.gmv_squares, rk.2 as f64, "{}", c.campaign_id);
        assert_eq!((t.gmv_squares_noise, k.gmv_squares_noise), (0.0, 0.0));
        let g = c.incremental_gmv.unwrap();
        assert!((g.estimate - c.incremental_gmv_fen.unwrap()).abs() < 1e-6);
        assert!(g.low < g.estimate && g.estimate < g.high, "{g:?}");
        let pp = c.incremental_gmv_per_person.unwrap();
        assert!((g.estimate - pp.estimate * t.people as f64).abs() < 1e-6);
        // The same bootstrap from the exact moments, with the campaign's seed, is
        // reproduced by a report run again (seeded).
        let m = |g: (i64, i64, i128)| ValueMoments {
            people: g.0 as f64,
            sum: g.1 as f64,
            sum_squares: g.2 as f64,
            people_noise: 0.0,
            sum_noise: 0.0,
        };
        let v = value_bootstrap(&m(rt), &m(rk), 0.95, 20_000, 1);
        // Different seeds and draw counts: the ends agree to a few per cent of the width.
        let width = v.total.high - v.total.low;
        assert!((g.low - v.total.low).abs() < 0.08 * width, "{g:?} {v:?}");
        assert!((g.high - v.total.high).abs() < 0.08 * width, "{g:?} {v:?}");
        let r = c.iroas_interval.unwrap();
        let spend = c.spend_fen as f64;
        assert!((r.low - g.low / spend).abs() < 1e-12 && (r.high - g.high / spend).abs() < 1e-12);
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} campaigns with both groups");
    // Seeded: the same report again gives the same intervals.
    let mut engine2 = w.engine().await;
    let again = lift(
        &mut engine2,
        &w.info,
        &settings,
        &Sources::default(),
        None,
        "tester",
    )
    .await
    .unwrap();
    for (a, b) in report.campaigns.iter().zip(&again.campaigns) {
        assert_eq!(a.incremental_gmv, b.incremental_gmv);
    }

    // The benchmark's plain DataFusion attribution gives the engine's figures.
    let a = attribute(
        &mut engine,
        &w.info,
        &AttributionSettings::default(),
        &Sources::default(),
        None,
        &[],
        "tester",
    )
    .await
    .unwrap();
    let released = bench::released_figures(&a);
    assert!(released.len() >= 25);
    let ctx = SessionContext::new();
    jingteng_engine::register_view(&ctx, &w.state, &w.info)
        .await
        .unwrap();
    let mut plain = bench::plain_attribution(&ctx, &AttributionSettings::default())
        .await
        .unwrap();
    assert_eq!(plain.len(), 30);
    bench::check_equal(&plain, &released).unwrap();
    // A difference of one fen, or one order, is caught.
    let i = plain
        .iter()
        .position(|p| p.campaign_id == released[0].campaign_id)
        .unwrap();
    plain[i].gmv_fen += 1;
    assert!(bench::check_equal(&plain, &released).is_err());
    plain[i].gmv_fen -= 1;
    plain[i].conversions += 1.0;
    assert!(bench::check_equal(&plain, &released).is_err());
    assert!(bench::check_equal(&plain, &[]).is_err());
    // Other models are not written as plain SQL.
    let linear = AttributionSettings {
        model: jingteng_measure::Model::Linear,
        ..Default::default()
    };
    assert!(bench::plain_last_touch_sql(&linear).is_err());
}

#[test]
fn collab_in_mode_sets_every_party() {
    let party = |name: &str, privacy: &str| {
        format!(
            "[[party]]\nname = \"{name}\"\n{privacy}[[party.table]]\nname = \"users\"\npath = \"{name}.csv\"\nrecord_id = \"id\"\n[[party.table.identifier]]\ncolumn = \"phone\"\ntype = \"phone\"\n\n"
        )
    };
    let head = "[collaboration]\nid = \"x\"\n\n";
    let text = format!(
        "{head}{}{}",
        party("a", "[party.privacy]\nmode = \"dp\"\n"),
        party("b", "[party.privacy]\n  mode = \"threshold\"\n")
    );
    for mode in [
        jingteng_engine::ReleaseMode::Threshold,
        jingteng_engine::ReleaseMode::Dp,
    ] {
        let c = bench::collab_in_mode(&text, mode).unwrap();
        assert!(c.parties().iter().all(|p| p.privacy.mode == mode));
    }
    // A party without a mode line (DP by default) cannot be switched by the rewrite.
    let text = format!("{head}{}{}", party("a", ""), party("b", ""));
    assert!(bench::collab_in_mode(&text, jingteng_engine::ReleaseMode::Threshold).is_err());
    assert!(bench::collab_in_mode(&text, jingteng_engine::ReleaseMode::Dp).is_ok());
}
