//! `jingteng demo` as a newcomer runs it: the world, three nodes on loopback, the
//! networked match, report.json consistent with truth.json; no overwriting by accident.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Output};

fn jingteng(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jingteng"))
        .args(args)
        .output()
        .expect("the jingteng binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn demo_matches_the_truth_and_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let out_s = out.to_str().unwrap();
    let o = jingteng(&[
        "demo",
        "--no-serve",
        "--out",
        out_s,
        "--scale",
        "tiny",
        "--seed",
        "3",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));

    // report.json is what --json printed, and points at the truth next to it.
    let report = read_json(&out.join("report.json"));
    let printed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report, printed);
    assert_eq!(report["truth"], "truth.json");
    let truth = read_json(&out.join(report["truth"].as_str().unwrap()));
    assert_eq!(truth, read_json(&out.join("world/truth.json")));

    // The networked match found what a perfect match can, and what local mode finds.
    let sets = truth["overlap"].as_object().unwrap();
    assert_eq!(sets.len(), 11, "four parties: every set of two or more");
    for (key, t) in sets {
        let m = &report["match"]["overlap"][key];
        assert_eq!(m["matched"], t["linkable"], "overlap.{key}");
        for (id_type, n) in t["by_id_type"].as_object().unwrap() {
            assert_eq!(
                m["by_id_type"][id_type].as_u64().unwrap_or(0),
                n.as_u64().unwrap(),
                "overlap.{key} via {id_type}"
            );
        }
    }
    assert_eq!(report["checks"]["networked_equals_local"], true);
    assert_eq!(report["checks"]["matched_equals_truth_linkable"], true);
    assert_eq!(report["match"]["collaboration"], "synth-3");

    // Real nodes: each party's directory, the fully signed contract, the host's job.
    for party in ["social", "retail", "brand", "news"] {
        assert!(out.join("nodes").join(party).join("node.toml").exists());
        assert_eq!(report["nodes"][party]["host"], party == "retail");
    }
    assert_eq!(
        report["contract"]["signed"],
        serde_json::json!(["social", "retail", "brand", "news"])
    );
    let contract = read_json(&out.join("nodes/contract.json"));
    assert_eq!(contract["signatures"].as_object().unwrap().len(), 4);
    let retail = out.join("nodes/retail");
    let o = jingteng(&["jobs", "--dir", retail.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let jobs: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(jobs[0]["state"], "done");
    // Insight under DP: every overlap near truth's linkable figure (far outside the
    // 95% bound only with negligible probability), an age profile, the budget spent.
    let insight = &report["insight"];
    assert_eq!(insight["mode"], "dp");
    for set in [
        "social+retail",
        "social+brand",
        "retail+brand",
        "social+retail+brand",
    ] {
        let o = &insight["overlap"][set];
        let (n, t, b) = (
            o["people"].as_i64().unwrap(),
            o["truth_linkable"].as_i64().unwrap(),
            o["bound95"].as_f64().unwrap(),
        );
        assert!(
            ((n - t).abs() as f64) <= 4.0 * b + 1.0,
            "{set}: {n} vs {t} ± {b}"
        );
    }
    assert!(!insight["profile"]["rows"].as_array().unwrap().is_empty());
    // ε 0.5 for each of the 11 overlaps and for the profile.
    assert_eq!(insight["budget"]["spent"], 6.0);
    // An audience defined by the brand at the host, delivered to social: its size
    // released under DP (within its noise bound of what social holds, except with
    // negligible probability), social's own user ids in social's node.
    let a = &report["audience"];
    assert_eq!(a["release"], "dp", "{a}");
    assert_eq!(a["defined_by"], "brand");
    assert_eq!(a["delivered"]["to"], "social");
    assert_eq!(a["delivered"]["version"], 1);
    let users = a["delivered"]["users_at_media"].as_i64().unwrap();
    assert!(users >= 100, "{a}");
    let released = a["released_people"].as_i64().unwrap();
    let bound = a["bound95"].as_f64().unwrap();
    assert!(
        ((released - users).abs() as f64) <= 4.0 * bound + 1.0,
        "{a}"
    );
    let file = out.join(a["delivered"]["file"].as_str().unwrap());
    assert!(file.exists(), "{}", file.display());
    // Measurement of each of the brand's campaigns at the host, next to the truth: the
    // brand's campaigns, attribution released or marked suppressed, lift with its
    // interval or a note, reach across both media parties near truth's.
    let focal = truth["world"]["focal_brand"].as_str().unwrap();
    let ours: Vec<&String> = truth["campaigns"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, c)| c["brand"] == focal)
        .map(|(id, _)| id)
        .collect();
    assert!(!ours.is_empty());
    for key in ["attribution", "lift", "reach"] {
        let m = &report[key];
        assert_eq!(m["brand"], focal, "{key}");
        assert_eq!(m["analyst"], "brand:measurement", "{key}");
        let ids: Vec<&str> = m["campaigns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["campaign_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ours, "{key}");
    }
    for c in report["attribution"]["campaigns"].as_array().unwrap() {
        assert!(c["released"].is_boolean(), "{c}");
        assert!(c["truth_linked"]["conversions"].is_number(), "{c}");
    }
    for c in report["lift"]["campaigns"].as_array().unwrap() {
        assert!(
            c["relative_lift"]["low"].is_number() || c["note"].is_string(),
            "{c}"
        );
    }
    assert_eq!(
        report["reach"]["parties"],
        serde_json::json!(["social", "news"])
    );
    for c in report["reach"]["campaigns"].as_array().unwrap() {
        let (n, t) = (
            c["deduplicated"].as_f64().unwrap(),
            c["truth_linked"]["deduplicated"].as_f64().unwrap(),
        );
        assert!((n - t).abs() <= 0.1 * t + 50.0, "{c}");
    }
    // The same report as a page, with the sections that have figures.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for section in [
        "Match · 匹配",
        "Insight · 洞察",
        "Attribution · 归因",
        "Incremental lift",
        "Reach and frequency",
    ] {
        assert!(html.contains(section), "report.html has no {section}");
    }

    // A second run without --force refuses and leaves the demo alone.
    let o = jingteng(&["demo", "--no-serve", "--out", out_s, "--scale", "tiny"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("exists and is not empty (use --force"),
        "{}",
        stderr(&o)
    );
    assert_eq!(read_json(&out.join("report.json")), report);

    // With --force it replaces the previous demo: new nodes, new keys, same counts.
    let o = jingteng(&[
        "demo",
        "--no-serve",
        "--force",
        "--out",
        out_s,
        "--scale",
        "tiny",
        "--seed",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let again = read_json(&out.join("report.json"));
    assert_eq!(again["match"]["overlap"], report["match"]["overlap"]);
    assert_ne!(
        again["nodes"]["retail"]["cert_sha256"],
        report["nodes"]["retail"]["cert_sha256"]
    );
}

#[test]
fn demo_force_replaces_only_a_previous_demo() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("mine");
    std::fs::create_dir_all(out.join("world")).unwrap();
    std::fs::write(out.join("thesis.tex"), "precious").unwrap();
    let o = jingteng(&[
        "demo",
        "--no-serve",
        "--force",
        "--out",
        out.to_str().unwrap(),
        "--scale",
        "tiny",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("thesis.tex"), "{}", stderr(&o));
    assert!(out.join("thesis.tex").exists());
    assert!(out.join("world").exists());
}

#[test]
fn demo_rejects_a_bad_scale() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let o = jingteng(&[
        "demo",
        "--no-serve",
        "--out",
        out.to_str().unwrap(),
        "--scale",
        "huge",
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--scale"), "{}", stderr(&o));
    assert!(
        !out.exists(),
        "nothing is made before the arguments are checked"
    );
}
