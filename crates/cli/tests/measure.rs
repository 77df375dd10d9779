//! `jingteng measure reach` and `jingteng measure program` as a user runs them, on a
//! world with two media parties: readable tables, `--json`, and clear errors.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::{Command, Output};

fn jingteng(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jingteng"))
        .args(args)
        .output()
        .expect("the jingteng binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn reach_and_program_on_a_world_with_news() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path().join("world");
    let o = jingteng(&[
        "synth",
        "--out",
        w.to_str().unwrap(),
        "--scale",
        "tiny",
        "--seed",
        "9",
        "--media",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("news/exposures"));
    let spec = w.join("collab.toml");
    let t = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, t.replace("mode = \"dp\"", "mode = \"threshold\"")).unwrap();
    let spec = spec.to_str().unwrap();

    let o = jingteng(&["measure", "reach", "--spec", spec]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for s in [
        "reach (de-dup.)",
        "only news",
        "match: de-duplication stands on",
        "10+",
        "threshold mode",
    ] {
        assert!(out.contains(s), "{s:?} in {out}");
    }

    let o = jingteng(&[
        "measure",
        "reach",
        "--spec",
        spec,
        "--campaign",
        "C03",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["parties"], serde_json::json!(["social", "news"]));
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.join("truth.json")).unwrap()).unwrap();
    assert_eq!(
        r["campaigns"][0]["deduplicated"],
        truth["reach"]["C03"]["matched"]["deduplicated"]
    );

    let o = jingteng(&["measure", "reach", "--spec", spec, "--campaign", "C99"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("no campaign C99"),
        "{}",
        text(&o.stderr)
    );

    let o = jingteng(&["measure", "program", "--spec", spec]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    for s in [
        "2026-03",
        "brands back",
        "spend back",
        "attribution settings",
        "match:",
    ] {
        assert!(out.contains(s), "{s:?} in {out}");
    }
    let o = jingteng(&["measure", "program", "--spec", spec, "--cap", "2", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["months"].as_array().unwrap().len(), 6);
    assert_eq!(r["settings"]["cap"], 2);
    assert_eq!(
        r["months"][1]["spend_fen"],
        truth["program"]["2026-02"]["spend_fen"]
    );

    let o = jingteng(&[
        "synth",
        "--out",
        tmp.path().join("x").to_str().unwrap(),
        "--media",
        "3",
    ]);
    assert!(!o.status.success());
}
