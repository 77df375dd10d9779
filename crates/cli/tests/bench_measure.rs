//! `jingteng bench lift-coverage` and `jingteng bench attribution`, at toy sizes: the
//! commands run, their JSON says what the docs say, and the attribution benchmark
//! checks the engine against plain DataFusion before it reports a ratio.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

fn jingteng() -> Command {
    Command::new(env!("CARGO_BIN_EXE_jingteng"))
}

#[test]
fn lift_coverage_reports_every_interval() {
    let out = jingteng()
        .args([
            "bench",
            "lift-coverage",
            "--studies",
            "5",
            "--min-people",
            "20000",
            "--max-people",
            "30000",
            "--draws",
            "200",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["studies"].as_array().unwrap().len(), 5);
    let intervals = v["report"]["intervals"].as_array().unwrap();
    assert_eq!(intervals.len(), 5);
    for i in intervals {
        let (covered, studies) = (
            i["covered"].as_u64().unwrap(),
            i["studies"].as_u64().unwrap(),
        );
        assert!(covered <= studies && studies + i["missing"].as_u64().unwrap() == 5);
        assert!(i["coverage_low"].as_f64().unwrap() <= i["coverage_high"].as_f64().unwrap());
    }
    assert_eq!(v["report"]["settings"]["mode"], "dp");
    // Effects are taken in turn, zero first.
    assert_eq!(v["studies"][0]["relative_effect"], 0.0);

    let bad = jingteng()
        .args(["bench", "lift-coverage", "--studies", "1", "--mode", "none"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn attribution_bench_checks_then_times_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let world = dir.path().join("w");
    let st = jingteng()
        .args(["synth", "--scale", "4000", "--out"])
        .arg(&world)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    // Small groups: release rows of two people or more, so campaigns are released.
    let spec = world.join("collab.toml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replace("min_people = 50", "min_people = 2")).unwrap();
    let out = jingteng()
        .args(["bench", "attribution", "--json", "--spec"])
        .arg(&spec)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["threshold_figures_equal"], true);
    let sides = v["sides"].as_array().unwrap();
    let names: Vec<&str> = sides.iter().map(|s| s["side"].as_str().unwrap()).collect();
    assert_eq!(names, ["plain", "engine-threshold", "engine-dp"]);
    for s in sides {
        assert!(s["median_seconds"].as_f64().unwrap() > 0.0);
        assert!(s["peak_rss_bytes"].as_u64().unwrap() >= s["start_rss_bytes"].as_u64().unwrap());
    }
    assert!(v["attributed_orders"].as_f64().unwrap() > 0.0);
    assert!(v["ratio_threshold"].as_f64().unwrap() > 0.0);
    assert_eq!(v["rep_ratios"].as_array().unwrap().len(), 1);
}
