//! The `jingteng` binary as a user runs it: exit codes, messages, JSON output.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

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

#[test]
fn synth_then_match_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let world = tmp.path().join("world");
    let w = world.to_str().unwrap();
    let o = jingteng(&["synth", "--out", w, "--scale", "tiny", "--seed", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Wrote a world of 5000 people"), "{out}");

    let spec = world.join("collab.toml");
    let o = jingteng(&["match", "--spec", spec.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(world.join("truth.json")).unwrap()).unwrap();
    assert_eq!(
        report["overlap"]["social+retail"]["matched"],
        truth["overlap"]["social+retail"]["linkable"]
    );

    // The same world again without --force is refused, and the world is kept.
    let o = jingteng(&["synth", "--out", w, "--scale", "tiny"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert!(world.join("truth.json").exists());
}

#[test]
fn mistakes_exit_non_zero_with_a_message() {
    let o = jingteng(&["synth", "--out", "/tmp/never", "--scale", "huge"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unknown scale \"huge\""),
        "{}",
        stderr(&o)
    );

    let o = jingteng(&["match", "--spec", "/nonexistent/collab.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/collab.toml"),
        "{}",
        stderr(&o)
    );

    let o = jingteng(&["match"]);
    assert_eq!(o.status.code(), Some(2), "usage errors exit 2");
}

#[test]
fn audit_verify_names_an_edited_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("retail");
    let d = dir.to_str().unwrap();
    let o = jingteng(&["init", "--party", "retail", "--dir", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = jingteng(&["audit", "verify", "--dir", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 entries"));

    // Someone with the file and a SQLite shell edits the entry.
    let conn = rusqlite::Connection::open(dir.join("catalog.sqlite")).unwrap();
    conn.execute_batch(
        "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET actor = 'mallory' WHERE seq = 1;",
    )
    .unwrap();
    drop(conn);
    let o = jingteng(&["audit", "verify", "--dir", d]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("broken at entry 1"), "{}", stderr(&o));
}

/// Three separate `jingteng serve` processes on loopback (social, retail as host,
/// brand) match the synthetic world exactly as truth.json says.
#[test]
fn three_serve_processes_match_over_the_network() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let p = |rel: &str| root.join(rel).to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let o = jingteng(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        o
    };
    run(&[
        "synth",
        "--out",
        &p("world"),
        "--scale",
        "tiny",
        "--seed",
        "13",
    ]);
    let spec = p("world/collab.toml");
    for party in ["social", "retail", "brand"] {
        run(&["init", "--party", party, "--dir", &p(party)]);
        // A free loopback port for this node.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = root.join(party).join("node.toml");
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("127.0.0.1:7443", &format!("127.0.0.1:{port}"));
        std::fs::write(&cfg, text).unwrap();
    }
    for party in ["social", "brand"] {
        let card = run(&["collab", "card", "--dir", &p(party)]).stdout;
        std::fs::write(root.join(format!("{party}.card")), card).unwrap();
    }
    run(&[
        "collab",
        "propose",
        "--dir",
        &p("retail"),
        "--spec",
        &spec,
        "--card",
        &p("social.card"),
        "--card",
        &p("brand.card"),
        "--out",
        &p("contract.json"),
    ]);
    run(&[
        "collab",
        "sign",
        "--dir",
        &p("social"),
        "--contract",
        &p("contract.json"),
    ]);
    run(&[
        "collab",
        "sign",
        "--dir",
        &p("brand"),
        "--contract",
        &p("contract.json"),
    ]);
    for party in ["social", "retail", "brand"] {
        run(&[
            "collab",
            "status",
            "--dir",
            &p(party),
            "--contract",
            &p("contract.json"),
        ]);
    }
    let tables = [
        ("social", "users"),
        ("social", "campaigns"),
        ("social", "exposures"),
        ("social", "holdout"),
        ("retail", "users"),
        ("retail", "orders"),
        ("brand", "crm"),
    ];
    for (party, table) in tables {
        run(&[
            "import",
            "--dir",
            &p(party),
            "--spec",
            &spec,
            "--table",
            table,
        ]);
    }

    struct Servers(Vec<std::process::Child>);
    impl Drop for Servers {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = std::process::Command::new("kill")
                    .arg("-TERM")
                    .arg(c.id().to_string())
                    .status();
                let _ = c.wait();
            }
        }
    }
    let servers = Servers(
        ["social", "retail", "brand"]
            .iter()
            .map(|party| {
                Command::new(env!("CARGO_BIN_EXE_jingteng"))
                    .args(["serve", "--dir", &p(party)])
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    // The servers take a moment to listen: retry the match until the host answers.
    let mut report = None;
    for _ in 0..100 {
        let o = jingteng(&[
            "match",
            "--collab",
            "synth-13",
            "--dir",
            &p("retail"),
            "--json",
        ]);
        if o.status.success() {
            report = Some(serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let report = report.expect("the networked match ran");
    // The brand's analyst asks the host; a query that would release identifiers is
    // refused with the rule and exit status 3, as in local mode.
    let sql = "SELECT level, COUNT(DISTINCT person) AS people FROM retail.users GROUP BY level";
    let answer = run(&[
        "query",
        "--collab",
        "synth-13",
        "--dir",
        &p("brand"),
        "--json",
        sql,
    ])
    .stdout;
    let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
    assert!(!answer["rows"].as_array().unwrap().is_empty(), "{answer}");
    assert!(
        answer["budget"]["spent"].as_f64().unwrap() > 0.0,
        "{answer}"
    );
    let refused = jingteng(&[
        "query",
        "--collab",
        "synth-13",
        "--dir",
        &p("brand"),
        "SELECT phone FROM retail.users",
    ]);
    assert_eq!(refused.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refused [identifier]"));
    drop(servers);
    let jobs = run(&["jobs", "--dir", &p("retail"), "--json"]).stdout;
    let jobs: serde_json::Value = serde_json::from_slice(&jobs).unwrap();
    assert_eq!(jobs[0]["state"], "done", "{jobs}");
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("world/truth.json")).unwrap())
            .unwrap();
    for (key, t) in truth["overlap"].as_object().unwrap() {
        assert_eq!(
            report["overlap"][key]["matched"], t["linkable"],
            "overlap.{key}"
        );
    }
}
