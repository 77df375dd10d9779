//! `--media 2`: the news party is added without changing the other parties' files, and
//! truth.json's cross-media reach over all people equals a recomputation from the files.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::path::Path;

use jingteng_synth::{Config, Error, generate};
use serde_json::Value;

fn config(seed: u64, media: u8) -> Config {
    Config {
        seed,
        scale: "6000".parse().unwrap(),
        force: false,
        media,
    }
}

/// A CSV file as header → column index and rows (these files hold no quoted commas).
fn csv(dir: &Path, name: &str) -> (HashMap<String, usize>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(dir.join(format!("{name}.csv"))).unwrap();
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap()
        .split(',')
        .enumerate()
        .map(|(i, h)| (h.to_string(), i))
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    (header, rows)
}

#[test]
fn news_adds_a_party_and_leaves_the_others_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    generate(&config(13, 1), &one, &|_, _| {}).unwrap();
    let summary = generate(&config(13, 2), &two, &|_, _| {}).unwrap();
    assert!(summary.people.iter().any(|(p, n)| *p == "news" && *n > 0));
    for table in [
        "social/users",
        "social/campaigns",
        "social/exposures",
        "social/holdout",
        "retail/users",
        "retail/orders",
        "brand/crm",
        "truth/people",
        "truth/caused_orders",
    ] {
        for ext in ["csv", "parquet"] {
            let name = format!("{table}.{ext}");
            assert!(
                std::fs::read(one.join(&name)).unwrap() == std::fs::read(two.join(&name)).unwrap(),
                "{name} differs between --media 1 and --media 2"
            );
        }
    }
    for table in ["news/users", "news/exposures", "truth/news_users"] {
        assert!(!one.join(format!("{table}.csv")).exists());
        assert!(two.join(format!("{table}.parquet")).exists());
    }
    let spec = std::fs::read_to_string(two.join("collab.toml")).unwrap();
    let names: Vec<&str> = spec
        .lines()
        .zip(spec.lines().skip(1))
        .filter(|(a, _)| *a == "[[party]]")
        .map(|(_, b)| b.trim_start_matches("name = ").trim_matches('"'))
        .collect();
    assert_eq!(names, ["social", "retail", "brand", "news"]);
    assert!(spec.contains("path = \"news/exposures.parquet\""));
    let truth_one: Value =
        serde_json::from_str(&std::fs::read_to_string(one.join("truth.json")).unwrap()).unwrap();
    assert!(truth_one.get("reach").is_none());

    // Reach over all people, recomputed from the files.
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(two.join("truth.json")).unwrap()).unwrap();
    let (h, people) = csv(&two, "truth/people");
    let social_person: HashMap<String, String> = people
        .iter()
        .filter(|r| !r[h["social_user_id"]].is_empty())
        .map(|r| (r[h["social_user_id"]].clone(), r[h["person_id"]].clone()))
        .collect();
    let (h, news) = csv(&two, "truth/news_users");
    let news_person: HashMap<String, String> = news
        .iter()
        .map(|r| (r[h["news_user_id"]].clone(), r[h["person_id"]].clone()))
        .collect();
    // (campaign, person) → [social impressions, news impressions]
    let mut seen: HashMap<(String, String), [u64; 2]> = HashMap::new();
    for (party, table, person_of) in [
        (0, "social/exposures", &social_person),
        (1, "news/exposures", &news_person),
    ] {
        let (h, rows) = csv(&two, table);
        for r in rows.iter().filter(|r| r[h["kind"]] == "impression") {
            let person = person_of[&r[h["user_id"]]].clone();
            seen.entry((r[h["campaign_id"]].clone(), person))
                .or_default()[party] += 1;
        }
    }
    let reach = truth["reach"].as_object().unwrap();
    assert_eq!(reach.len(), 30);
    let mut on_news = 0;
    for (id, t) in reach {
        let mut expected = [0u64; 6];
        let mut freq = [0u64; 10];
        for ((c, _), [s, n]) in &seen {
            if c != id {
                continue;
            }
            expected[0] += u64::from(*s > 0);
            expected[1] += u64::from(*n > 0);
            expected[2] += 1;
            expected[3] += u64::from(*s > 0 && *n > 0);
            expected[4] += u64::from(*n == 0);
            expected[5] += u64::from(*s == 0);
            freq[((s + n).min(10) - 1) as usize] += 1;
        }
        let all = &t["all"];
        let got: Vec<u64> = [
            "social",
            "news",
            "deduplicated",
            "overlap",
            "incremental_social",
            "incremental_news",
        ]
        .iter()
        .map(|k| all[k].as_u64().unwrap())
        .collect();
        assert_eq!(got, expected, "reach.{id}.all");
        let got_freq: Vec<u64> = all["frequency"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(got_freq, freq, "reach.{id}.all.frequency");
        // Social's own reach is the campaign's reach.
        assert_eq!(all["social"], truth["campaigns"][id]["all"]["reach"]);
        // The match can only split people, never merge them.
        let m = &t["matched"];
        assert_eq!(m["social"], all["social"]);
        assert_eq!(m["news"], all["news"]);
        assert!(m["overlap"].as_u64() <= all["overlap"].as_u64());
        assert_eq!(
            m["deduplicated"].as_u64().unwrap() + m["overlap"].as_u64().unwrap(),
            all["deduplicated"].as_u64().unwrap() + all["overlap"].as_u64().unwrap()
        );
        if t["on_news"].as_bool().unwrap() {
            on_news += 1;
            assert!(all["overlap"].as_u64().unwrap() > 0, "{id}");
        } else {
            assert_eq!(all["news"], 0);
        }
    }
    assert!((10..=25).contains(&on_news), "{on_news} campaigns on news");
}

#[test]
fn media_other_than_one_or_two_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let err = generate(&config(1, 3), &tmp.path().join("w"), &|_, _| {}).unwrap_err();
    assert!(matches!(err, Error::Media(3)), "{err}");
    assert!(!tmp.path().join("w").exists());
}
