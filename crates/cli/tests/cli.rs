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
