//! The audit chain detects every change, removal or reordering of an entry and names it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use jingteng_catalog::{Catalog, Error};
use rusqlite::Connection;
use serde_json::json;

fn catalog_with_entries(n: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("catalog.sqlite");
    let mut c = Catalog::open(&path).unwrap();
    for i in 0..n {
        c.audit("retail", "query", &format!("q{i}"), &json!({"rows": i}))
            .unwrap();
    }
    assert_eq!(c.verify_audit().unwrap(), n as u64);
    (tmp, path)
}

/// What someone with the database file and the sqlite3 shell could do.
fn tamper(path: &std::path::Path, sql: &str) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;")
        .unwrap();
    conn.execute_batch(sql).unwrap();
}

fn broken_at(path: &std::path::Path) -> (i64, String) {
    match Catalog::open(path).unwrap().verify_audit() {
        Err(Error::AuditBroken { seq, reason }) => (seq, reason),
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

#[test]
fn an_edited_entry_is_named() {
    let (_tmp, path) = catalog_with_entries(5);
    tamper(
        &path,
        "UPDATE audit_log SET details = '{\"rows\":999}' WHERE seq = 3",
    );
    let (seq, reason) = broken_at(&path);
    assert_eq!(seq, 3);
    assert!(reason.contains("changed"), "{reason}");
}

#[test]
fn a_re_hashed_edit_breaks_the_next_link() {
    // Recomputing the edited entry's hash is not enough: the next entry no longer follows.
    let (_tmp, path) = catalog_with_entries(5);
    tamper(&path, "UPDATE audit_log SET hash = 'f00d' WHERE seq = 2");
    let (seq, _) = broken_at(&path);
    assert_eq!(seq, 2);
}

#[test]
fn a_deleted_entry_is_named() {
    let (_tmp, path) = catalog_with_entries(5);
    tamper(&path, "DELETE FROM audit_log WHERE seq = 4");
    let (seq, reason) = broken_at(&path);
    assert_eq!(seq, 4);
    assert!(reason.contains("missing"), "{reason}");
}

#[test]
fn a_deleted_last_entry_is_named() {
    let (_tmp, path) = catalog_with_entries(5);
    tamper(&path, "DELETE FROM audit_log WHERE seq = 5");
    let (seq, reason) = broken_at(&path);
    assert_eq!(seq, 5);
    assert!(reason.contains("removed"), "{reason}");
}

#[test]
fn the_log_refuses_updates_through_sql() {
    let (_tmp, path) = catalog_with_entries(2);
    let conn = Connection::open(&path).unwrap();
    let err = conn
        .execute("UPDATE audit_log SET actor = 'x' WHERE seq = 1", [])
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    assert!(conn.execute("DELETE FROM audit_log", []).is_err());
}

#[test]
fn dataset_versions_are_kept_and_audited() {
    let mut c = Catalog::in_memory().unwrap();
    let v1 = c
        .add_dataset_version(
            "retail",
            "retail/users",
            "tables/retail/users/v1.parquet",
            10,
            "{}",
            "users.csv",
            "ab",
        )
        .unwrap();
    let v2 = c
        .add_dataset_version(
            "retail",
            "retail/users",
            "tables/retail/users/v2.parquet",
            12,
            "{}",
            "users.csv",
            "cd",
        )
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(c.datasets().unwrap(), vec![v2]);
    let audit = c.audit_entries().unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[1].action, "import");
    assert_eq!(c.verify_audit().unwrap(), 2);
    assert_eq!(c.schema_version().unwrap(), 3);
}

#[test]
fn jobs_move_through_their_states() {
    let mut c = Catalog::in_memory().unwrap();
    let a = c
        .start_job("match", Some("pilot"), &json!({"run": "ab"}))
        .unwrap();
    let b = c
        .start_job("match", Some("pilot"), &json!({"run": "cd"}))
        .unwrap();
    c.finish_job(a, None).unwrap();
    c.finish_job(b, Some("brand unreachable")).unwrap();
    let jobs = c.jobs().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(
        (jobs[0].state.as_str(), jobs[0].error.as_deref()),
        ("failed", Some("brand unreachable"))
    );
    assert_eq!(jobs[1].state, "done");
    assert!(c.finish_job(99, None).is_err());
}

#[test]
fn an_unfinished_job_is_resumed_and_a_finished_one_is_not() {
    let mut c = Catalog::in_memory().unwrap();
    let a = c
        .start_job("match", Some("pilot"), &json!({"run": "ab"}))
        .unwrap();
    c.update_job(a, "retrying", &json!({"run": "ab", "retrying": "brand"}))
        .unwrap();
    assert_eq!(c.jobs().unwrap()[0].state, "retrying");
    assert_eq!(c.resume_job(a).unwrap(), 2);
    let job = &c.jobs().unwrap()[0];
    assert_eq!(
        (job.state.as_str(), job.attempts, job.progress.as_str()),
        ("running", 2, r#"{"retrying":"brand","run":"ab"}"#)
    );
    // update_job never ends a job, and a finished job stays finished.
    assert!(c.update_job(a, "done", &json!({})).is_err());
    c.finish_job(a, None).unwrap();
    assert!(c.resume_job(a).is_err());
    assert!(c.update_job(a, "running", &json!({})).is_err());
    assert_eq!(c.jobs().unwrap()[0].state, "done");
}

#[test]
fn budget_is_reserved_then_charged_or_refunded() {
    let mut c = Catalog::in_memory().unwrap();
    let a = c
        .reserve_budget("pilot", "ana", "q1", 4.0, 10.0)
        .unwrap()
        .unwrap();
    let b = c
        .reserve_budget("pilot", "ana", "q2", 4.0, 10.0)
        .unwrap()
        .unwrap();
    // Reserved counts as spent: a third query of 4 would go over 10.
    assert_eq!(
        c.reserve_budget("pilot", "ana", "q3", 4.0, 10.0).unwrap(),
        None
    );
    c.settle_budget(a, true).unwrap();
    c.settle_budget(b, false).unwrap();
    assert_eq!(c.budget_spent("pilot", "ana").unwrap(), 4.0);
    // A reservation is settled once.
    assert!(c.settle_budget(b, true).is_err());
    // Budgets are per analyst and per collaboration.
    assert_eq!(c.budget_spent("pilot", "bob").unwrap(), 0.0);
    assert_eq!(c.budget_spent("other", "ana").unwrap(), 0.0);
    // Exactly the budget in equal parts fits.
    let d = c.reserve_budget("pilot", "ana", "q4", 6.0, 10.0).unwrap();
    assert!(d.is_some());
    // The ledger lists every reservation of the collaboration, oldest first, with its state.
    let ledger = c.budget_entries("pilot").unwrap();
    let states: Vec<(&str, f64, &str)> = ledger
        .iter()
        .map(|e| (e.analyst.as_str(), e.epsilon, e.state.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            ("ana", 4.0, "charged"),
            ("ana", 4.0, "refunded"),
            ("ana", 6.0, "reserved"),
        ]
    );
    assert!(ledger.iter().all(|e| e.updated_ms >= e.created_ms));
    assert!(c.budget_entries("other").unwrap().is_empty());
    c.cache_answer("pilot", "ana", "q1", "{}").unwrap();
    assert_eq!(
        c.cached_answer("pilot", "ana", "q1").unwrap().as_deref(),
        Some("{}")
    );
    assert_eq!(c.cached_answer("pilot", "bob", "q1").unwrap(), None);
}

#[test]
fn forget_requests_are_kept_once_and_clear_the_cache() {
    let mut c = Catalog::in_memory().unwrap();
    assert!(c.record_forget("c1", "social", "wx1", "opt-out").unwrap());
    assert!(!c.record_forget("c1", "social", "wx1", "opt-out").unwrap());
    assert!(c.record_forget("c1", "social", "wx1", "delete").unwrap());
    assert!(c.record_forget("c2", "retail", "jd9", "delete").unwrap());
    assert!(c.record_forget("c1", "social", "wx2", "erase").is_err());
    let r = c.forget_requests("c1").unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(
        (r[0].kind.as_str(), r[1].kind.as_str()),
        ("opt-out", "delete")
    );
    c.cache_answer("c1", "a", "h1", "{}").unwrap();
    c.cache_answer("c2", "a", "h1", "{}").unwrap();
    assert_eq!(c.clear_query_cache("c1").unwrap(), 1);
    assert!(c.cached_answer("c1", "a", "h1").unwrap().is_none());
    assert!(c.cached_answer("c2", "a", "h1").unwrap().is_some());
}
