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
    for (party, table) in [("social", "users"), ("retail", "users"), ("brand", "crm")] {
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
    drop(servers);
    let report = report.expect("the networked match ran");
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

#[test]
fn audiences_create_deliver_list_and_forget() {
    let tmp = tempfile::tempdir().unwrap();
    let world = tmp.path().join("world");
    let o = jingteng(&[
        "synth",
        "--out",
        world.to_str().unwrap(),
        "--scale",
        "tiny",
        "--seed",
        "4",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let spec = world.join("collab.toml");
    let spec = spec.to_str().unwrap();
    // Under the minimum: refused with the size class, exit 3.
    let o = jingteng(&[
        "audience",
        "create",
        "--spec",
        spec,
        "--name",
        "few",
        "--include",
        "retail.orders.category = 'baby' AND ts within 1 days",
        "--as-of",
        "2026-06-30",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("fewer than 1,000"), "{}", stderr(&o));
    // An identifier in a rule: refused, exit 3.
    let o = jingteng(&[
        "audience",
        "create",
        "--spec",
        spec,
        "--name",
        "ids",
        "--include",
        "social.users.phone_md5 = 'x'",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("refused [identifier]"),
        "{}",
        stderr(&o)
    );
    let o = jingteng(&[
        "audience",
        "create",
        "--spec",
        spec,
        "--name",
        "hair",
        "--include",
        "retail.orders.category = 'hair_care'",
        "--exclude",
        "brand.crm",
        "--min-size",
        "1",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["size"]["release"]["mode"], "dp");
    let o = jingteng(&[
        "audience", "deliver", "hair", "--spec", spec, "--rta", "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["delivered"]["version"], 1);
    let file = world
        .join(".jingteng")
        .join(v["delivered"]["file"].as_str().unwrap());
    assert!(file.exists());
    assert_eq!(v["rta"]["campaigns"][0], "hair");
    let o = jingteng(&[
        "audience", "deliver", "hair", "--spec", spec, "--to", "retail",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let o = jingteng(&["audience", "list", "--spec", spec, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["name"], "hair");
    assert_eq!(v[0]["versions"], 1);
    let o = jingteng(&["audience", "show", "hair", "--spec", spec]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("hair_care"));
    // A user of the delivered audience opts out: out of the next version.
    let users = std::fs::read_to_string(world.join("social/users.csv")).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let member = users
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .find(|id| bytes.windows(id.len()).any(|w| w == id.as_bytes()))
        .unwrap()
        .to_string();
    let o = jingteng(&[
        "forget",
        "--spec",
        spec,
        "--party",
        "social",
        "--id",
        &member,
        "--opt-out",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["excluded_people"], 1);
    let o = jingteng(&["audience", "deliver", "hair", "--spec", spec, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["delivered"]["version"], 2);
    let v2 = std::fs::read(
        world
            .join(".jingteng")
            .join(v["delivered"]["file"].as_str().unwrap()),
    )
    .unwrap();
    assert!(!v2.windows(member.len()).any(|w| w == member.as_bytes()));
}
