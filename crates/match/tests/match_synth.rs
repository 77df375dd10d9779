//! The match over synthetic worlds finds exactly the people truth.json says a perfect
//! match can find, and on random inputs equals the plaintext intersection.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashSet;
use std::path::Path;

use arrow::array::StringArray;
use jingteng_match::{Source, match_sources};
use jingteng_psi::Collaboration;
use proptest::prelude::*;
use serde_json::Value;

fn world(dir: &Path, seed: u64, scale: &str) {
    world_media(dir, seed, scale, 1);
}

fn world_media(dir: &Path, seed: u64, scale: &str, media: u8) {
    let config = jingteng_synth::Config {
        seed,
        scale: scale.parse().unwrap(),
        force: false,
        media,
    };
    jingteng_synth::generate(&config, dir, &|_, _| {}).unwrap();
}

fn check_against_truth(dir: &Path) {
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("truth.json")).unwrap()).unwrap();
    let report = jingteng_match::run(&dir.join("collab.toml"), &|_: &str, _: u64| {}).unwrap();
    let report = serde_json::to_value(&report).unwrap();
    let sets = truth["overlap"].as_object().unwrap();
    // Every set of two or more parties: 4 of three parties, 11 of four (with news).
    let parties = truth["people"].as_object().unwrap().len() - 1;
    assert_eq!(sets.len(), (1 << parties) - 1 - parties);
    for (key, t) in sets {
        let r = &report["overlap"][key];
        assert_eq!(
            r["matched"],
            t["linkable"],
            "{}: overlap.{key}",
            dir.display()
        );
        for ty in ["phone", "email", "device"] {
            assert_eq!(
                r["by_id_type"][ty], t["by_id_type"][ty],
                "overlap.{key}.{ty}"
            );
        }
    }
    for (party, columns) in truth["identifiers"].as_object().unwrap() {
        for (column, t) in columns.as_object().unwrap() {
            let r = &report["identifiers"][party][column];
            let n = |v: &Value| v.as_u64().unwrap();
            assert_eq!(n(&r["rows"]), n(&t["rows"]), "{party}.{column}.rows");
            assert_eq!(
                n(&r["missing"]),
                n(&t["missing"]),
                "{party}.{column}.missing"
            );
            assert_eq!(
                n(&r["invalid"]),
                n(&t["invalid"]),
                "{party}.{column}.invalid"
            );
            assert_eq!(
                n(&r["ambiguous"]),
                n(&t["ambiguous"]),
                "{party}.{column}.ambiguous"
            );
            assert_eq!(
                n(&r["valid"]),
                n(&t["valid"]) + n(&t["ambiguous"]),
                "{party}.{column}.valid"
            );
        }
    }
    assert_eq!(
        report["conflicts"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum::<u64>(),
        0
    );
}

#[test]
fn matched_counts_equal_truth_on_several_seeds_and_sizes() {
    // An odd size too: the last person has no household partner to share a device with.
    for (seed, scale) in [(1, "tiny"), (2, "3001"), (3, "9000")] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("w");
        world(&dir, seed, scale);
        check_against_truth(&dir);
    }
}

#[test]
fn four_parties_with_news_match_as_truth_says() {
    // News links to social on device only (social's phones are MD5, news's SHA-256),
    // to the retailer on phone and device, to the brand on phone: every set of the four
    // parties must be found exactly, bridges included.
    for (seed, scale) in [(6, "tiny"), (7, "4001")] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("w");
        world_media(&dir, seed, scale, 2);
        check_against_truth(&dir);
    }
}

#[test]
fn csv_tables_match_like_parquet_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("w");
    world(&dir, 4, "tiny");
    let spec = std::fs::read_to_string(dir.join("collab.toml")).unwrap();
    std::fs::write(dir.join("collab.toml"), spec.replace(".parquet", ".csv")).unwrap();
    check_against_truth(&dir);
}

#[test]
fn bad_input_is_reported_with_file_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("w");
    world(&dir, 5, "tiny");
    let spec_path = dir.join("collab.toml");
    let spec = std::fs::read_to_string(&spec_path).unwrap();

    // A column the file does not have.
    std::fs::write(
        &spec_path,
        spec.replace("column = \"phone_md5\"", "column = \"phone_hash\""),
    )
    .unwrap();
    let err = jingteng_match::run(&spec_path, &|_: &str, _: u64| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("social/users.parquet") && err.contains("no column \"phone_hash\""),
        "{err}"
    );

    // A CSV row with a missing field.
    std::fs::write(&spec_path, spec.replace(".parquet", ".csv")).unwrap();
    let csv_path = dir.join("retail/users.csv");
    let mut text = std::fs::read_to_string(&csv_path).unwrap();
    text.push_str("jd_broken,13800138000\n");
    std::fs::write(&csv_path, text).unwrap();
    let err = jingteng_match::run(&spec_path, &|_: &str, _: u64| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("retail/users.csv") && err.contains("line"),
        "{err}"
    );

    // A file that is not Parquet at all.
    std::fs::write(&spec_path, &spec).unwrap();
    std::fs::write(dir.join("brand/crm.parquet"), b"PAR1 not really").unwrap();
    let err = jingteng_match::run(&spec_path, &|_: &str, _: u64| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("brand/crm.parquet") && err.contains("Parquet"),
        "{err}"
    );

    // A spec mistake names where it is.
    std::fs::write(
        &spec_path,
        spec.replace("form = \"md5\"", "form = \"crc32\""),
    )
    .unwrap();
    let err = jingteng_match::run(&spec_path, &|_: &str, _: u64| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("collab.toml") && err.contains("party \"social\"") && err.contains("crc32"),
        "{err}"
    );
}

/// Two parties with one phone column each, in the given forms.
fn spec(form_a: &str, form_b: &str) -> Collaboration {
    Collaboration::parse(&format!(
        r#"
[collaboration]
id = "prop"
[[party]]
name = "a"
[[party.table]]
name = "u"
path = "a.csv"
record_id = "id"
[[party.table.identifier]]
column = "phone"
type = "phone"
form = "{form_a}"
[[party]]
name = "b"
[[party.table]]
name = "u"
path = "b.csv"
record_id = "id"
[[party.table.identifier]]
column = "phone"
type = "phone"
form = "{form_b}"
"#
    ))
    .unwrap()
}

fn hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect()
}

/// A phone number as a party in `form` would hold it; `style` picks a messy raw form.
fn written(number: u32, form: &str, style: u8) -> String {
    let n = format!("139{number:08}");
    match form {
        "md5" => hex(
            jingteng_psi::DigestKind::Md5.hash(n.as_bytes()).as_bytes(),
            style.is_multiple_of(2),
        ),
        "sha256" => hex(
            jingteng_psi::DigestKind::Sha256
                .hash(n.as_bytes())
                .as_bytes(),
            false,
        ),
        _ => match style % 4 {
            0 => n,
            1 => format!("86{n}"),
            2 => format!("+86 {}-{}-{}", &n[..3], &n[3..7], &n[7..]),
            _ => format!(" {} {} {} ", &n[..3], &n[3..7], &n[7..]),
        },
    }
}

fn source(values: Vec<String>) -> Source {
    let batches: Vec<Vec<StringArray>> = values
        .chunks(7)
        .map(|c| vec![StringArray::from_iter_values(c.iter())])
        .collect();
    Source::Batches(Box::new(batches.into_iter()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_protocol_finds_the_plaintext_intersection(
        a in proptest::collection::hash_set(0u32..400, 0..120),
        b in proptest::collection::hash_set(0u32..400, 0..120),
        forms in prop_oneof![
            Just(("raw", "raw")), Just(("raw", "md5")), Just(("md5", "raw")),
            Just(("sha256", "raw")), Just(("md5", "md5")),
        ],
        style in 0u8..8,
    ) {
        let collab = spec(forms.0, forms.1);
        let values = |set: &HashSet<u32>, form: &str| -> Vec<String> {
            let mut v: Vec<u32> = set.iter().copied().collect();
            v.sort_unstable();
            v.iter().enumerate().map(|(i, n)| written(*n, form, style.wrapping_add(i as u8))).collect()
        };
        let report = match_sources(
            &collab,
            vec![source(values(&a, forms.0)), source(values(&b, forms.1))],
            &|_: &str, _: u64| {},
        ).unwrap();
        let expected = a.intersection(&b).count() as u64;
        prop_assert_eq!(report.overlap["a+b"].matched, expected);
        prop_assert_eq!(report.overlap["a+b"].by_id_type["phone"], expected);
    }
}
