//! Acceptance for program metrics, threshold mode: spend, campaigns, brands,
//! impressions and clicks per month equal truth.json's `program.YYYY-MM` exactly;
//! conversions and GMV (linked people only, where truth.json counts everyone) add up
//! over the months to the campaigns' linked attributed figures and never exceed the
//! month's figure over all people; the re-investment rates equal the same definitions
//! computed here from truth.json's brand lists and the campaign table's rows.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use jingteng_measure::{AttributionSettings, Sources, program};

/// `YYYY-MM` of a day since 1970-01-01 (written again here, not taken from the crate).
fn month(days: i64) -> String {
    let (mut y, mut d) = (1970i64, days);
    loop {
        let len = if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
            366
        } else {
            365
        };
        if d < len {
            break;
        }
        d -= len;
        y += 1;
    }
    let feb = if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
        29
    } else {
        28
    };
    let lens = [31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut m = 0;
    while d >= lens[m] {
        d -= lens[m];
        m += 1;
    }
    format!("{y:04}-{:02}", m + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn program_metrics_equal_truth_in_threshold_mode() {
    let w = common::world(31, 6_000, "threshold", 2).await;
    let truth = w.truth();
    let mut engine = w.engine().await;
    let settings = AttributionSettings::default();
    let report = program(
        &mut engine,
        &w.info,
        &settings,
        &Sources::default(),
        "tester",
    )
    .await
    .unwrap();
    assert_eq!(report.settings_version, settings.version());
    assert!(report.notes[0].contains(&settings.version()));
    let t = truth["program"].as_object().unwrap();
    assert_eq!(
        report.months.iter().map(|m| &m.month).collect::<Vec<_>>(),
        t.keys().collect::<Vec<_>>()
    );
    let n = |v: &serde_json::Value| v.as_i64().unwrap();
    let (mut conversions, mut gmv) = (0.0, 0i64);
    for m in &report.months {
        let tm = &t[&m.month];
        assert_eq!(m.spend_fen, n(&tm["spend_fen"]), "{} spend", m.month);
        assert_eq!(
            m.campaigns as i64,
            n(&tm["campaigns_active"]),
            "{}",
            m.month
        );
        let brands: Vec<&str> = tm["brands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_str().unwrap())
            .collect();
        assert_eq!(m.brands, brands, "{} brands", m.month);
        assert_eq!(m.impressions, Some(n(&tm["impressions"])), "{}", m.month);
        assert_eq!(m.clicks, Some(n(&tm["clicks"])), "{}", m.month);
        let c = m.conversions.unwrap();
        assert!(c <= n(&tm["conversions"]) as f64, "{}", m.month);
        assert!(m.gmv_fen.unwrap() <= n(&tm["gmv_fen"]));
        assert!(m.linked_clicks.unwrap() <= m.clicks.unwrap());
        let cvr = m.cvr_click.unwrap();
        assert!((cvr - c / m.linked_clicks.unwrap() as f64).abs() < 1e-12);
        conversions += c;
        gmv += m.gmv_fen.unwrap();
    }
    let linked: (f64, i64) =
        truth["campaigns"]
            .as_object()
            .unwrap()
            .values()
            .fold((0.0, 0), |(c, g), v| {
                (
                    c + n(&v["linked"]["attributed_conversions"]) as f64,
                    g + n(&v["linked"]["attributed_gmv_fen"]),
                )
            });
    assert_eq!((conversions, gmv), linked);
    // The estimate over all people leans high: at least truth's all-people figure.
    let estimate: f64 = report
        .months
        .iter()
        .map(|m| m.conversions_estimate_all.unwrap())
        .sum();
    let all: i64 = t.values().map(|m| n(&m["conversions"])).sum();
    assert!(
        conversions <= all as f64 && estimate >= all as f64,
        "{conversions} {estimate} {all}"
    );

    // Month-on-month change and re-investment, from the truth's lists and the raw
    // campaign rows.
    let camps = w.table("social.campaigns");
    let (brand, start, end, spend) = (
        camps.strings("brand"),
        camps.ints("start_date"),
        camps.ints("end_date"),
        camps.ints("spend_fen"),
    );
    let mut by_brand: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for i in 0..camps.len() {
        let (s, e, total) = (start[i].unwrap(), end[i].unwrap(), spend[i].unwrap());
        let days = e - s + 1;
        for d in s..=e {
            let x = total / days + if d == s { total % days } else { 0 };
            *by_brand
                .entry(month(d))
                .or_default()
                .entry(brand[i].clone())
                .or_default() += x;
        }
    }
    for pair in report.months.windows(2) {
        let (last, this) = (&pair[0], &pair[1]);
        let before: BTreeSet<&str> = t[&last.month]["brands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_str().unwrap())
            .collect();
        let now: BTreeSet<&str> = t[&this.month]["brands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_str().unwrap())
            .collect();
        let share = before.intersection(&now).count() as f64 / before.len() as f64;
        assert_eq!(this.returning_brand_share, Some(share), "{}", this.month);
        let month_spend = &by_brand[&this.month];
        let back: i64 = month_spend
            .iter()
            .filter(|(b, _)| before.contains(b.as_str()))
            .map(|(_, s)| s)
            .sum();
        let total: i64 = month_spend.values().sum();
        assert_eq!(total, this.spend_fen);
        assert_eq!(
            this.returning_spend_share,
            Some(back as f64 / total as f64),
            "{}",
            this.month
        );
        assert_eq!(
            this.change.spend,
            Some(this.spend_fen as f64 / last.spend_fen as f64 - 1.0)
        );
        assert_eq!(
            this.change.campaigns,
            Some(this.campaigns as f64 / last.campaigns as f64 - 1.0)
        );
    }
    assert!(report.months[0].returning_brand_share.is_none());

    // Other settings: another version, so months compare only within one.
    let other = AttributionSettings {
        cap: 1,
        ..AttributionSettings::default()
    };
    let r2 = program(&mut engine, &w.info, &other, &Sources::default(), "tester")
        .await
        .unwrap();
    assert_ne!(r2.settings_version, report.settings_version);
    let total2: f64 = r2.months.iter().filter_map(|m| m.conversions).sum();
    assert!(total2 < conversions);
}
