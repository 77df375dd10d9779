//! `jingteng query` and `jingteng insight` as a user runs them: answers, refusals with
//! their rule and exit status 3, the spent budget with exit status 4, JSON output.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
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

fn world(dir: &Path, edit: impl Fn(String) -> String) -> String {
    let w = dir.join("world");
    let o = jingteng(&[
        "synth",
        "--out",
        w.to_str().unwrap(),
        "--scale",
        "tiny",
        "--seed",
        "4",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let spec = w.join("collab.toml");
    let t = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, edit(t)).unwrap();
    spec.to_str().unwrap().to_string()
}

#[test]
fn threshold_answers_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = world(tmp.path(), |t| {
        t.replace("mode = \"dp\"", "mode = \"threshold\"")
    });
    let o = jingteng(&[
        "query",
        "--spec",
        &spec,
        "SELECT region, COUNT(*) AS members FROM retail.users GROUP BY region ORDER BY members DESC",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains("members") && out.contains("threshold mode"),
        "{out}"
    );

    let o = jingteng(&[
        "query",
        "--spec",
        &spec,
        "--json",
        "SELECT COUNT(*) AS people FROM social.users s JOIN brand.crm b ON s.person = b.person",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["release"]["mode"], "threshold");
    assert_eq!(v["rows"][0]["noised"], false);
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(&spec).with_file_name("truth.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        v["rows"][0]["values"]["people"],
        truth["overlap"]["social+brand"]["linkable"]
    );

    for (sql, rule) in [
        ("SELECT phone FROM retail.users", "identifier"),
        ("SELECT age_band FROM social.users", "row-level-output"),
        (
            "SELECT region, COUNT(*) FROM retail.users GROUP BY region HAVING COUNT(*) = 1",
            "having",
        ),
        ("DROP TABLE retail.orders", "statement"),
    ] {
        let o = jingteng(&["query", "--spec", &spec, sql]);
        assert_eq!(o.status.code(), Some(3), "{sql}: {}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains(&format!("refused [{rule}]")),
            "{}",
            text(&o.stderr)
        );
        assert!(o.stdout.is_empty());
    }
    // Bad SQL is an ordinary error.
    let o = jingteng(&["query", "--spec", &spec, "SELEC 1"]);
    assert_eq!(o.status.code(), Some(1));

    // Every query and refusal is in the audit log of the local catalog, which verifies.
    let catalog = Path::new(&spec)
        .with_file_name(".jingteng")
        .join("catalog.sqlite");
    assert!(catalog.exists());

    let o = jingteng(&[
        "insight",
        "--spec",
        &spec,
        "profile",
        "--dimension",
        "social.users.age_band",
        "--of",
        "retail",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("25-34"));
}

#[test]
fn dp_budget_runs_out_with_exit_4() {
    let tmp = tempfile::tempdir().unwrap();
    let spec = world(tmp.path(), |t| t.replace("budget = 10.0", "budget = 1.0"));
    let q = |sql: &str| jingteng(&["query", "--spec", &spec, "--json", sql]);
    let a = q("SELECT channel, COUNT(*) AS orders FROM retail.orders GROUP BY channel");
    assert!(a.status.success(), "{}", text(&a.stderr));
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(v["release"]["mode"], "dp");
    assert_eq!(v["rows"][0]["noised"], true);
    assert!(v["rows"][0]["noise"]["orders"]["scale"].as_f64().unwrap() > 0.0);
    assert_eq!(v["budget"]["remaining"], 0.5);
    // The same query again: from the cache, free.
    let again = q("SELECT channel, COUNT(*) AS orders FROM retail.orders GROUP BY channel");
    let w: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(w["cached"], true);
    assert_eq!(w["rows"], v["rows"]);
    assert_eq!(w["budget"]["remaining"], 0.5);
    assert!(
        q("SELECT category, COUNT(*) FROM retail.orders GROUP BY category")
            .status
            .success()
    );
    let o = q("SELECT brand, COUNT(*) FROM retail.orders GROUP BY brand");
    assert_eq!(o.status.code(), Some(4), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("budget-exhausted"));
    // Another analyst still has a budget.
    let o = jingteng(&[
        "query",
        "--spec",
        &spec,
        "--analyst",
        "bob",
        "SELECT brand, COUNT(*) FROM retail.orders GROUP BY brand",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}
