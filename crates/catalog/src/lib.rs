//! A Jingteng node's catalog: `DATA_DIR/catalog.sqlite`.
//!
//! - Numbered migrations, applied in order inside a transaction, tracked by SQLite's
//!   `user_version`; the database runs in WAL mode.
//! - Datasets and their versions: every import adds a version, none is overwritten.
//! - Jobs with states, for long work that must survive a restart.
//! - The **audit log**: append-only and hash-chained. Every entry's hash covers its
//!   content and the previous entry's hash, and the latest hash is also kept apart in
//!   `meta`, so changing, removing or reordering any entry is detected by [`Catalog::verify_audit`],
//!   which names the first entry that does not hold.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Errors of the catalog.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database could not be opened, read or written.
    #[error("catalog: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The catalog was written by a newer Jingteng.
    #[error(
        "catalog schema version {found} is newer than this jingteng knows ({known}); upgrade jingteng"
    )]
    TooNew {
        /// Version in the file.
        found: u32,
        /// Newest version this build knows.
        known: u32,
    },
    /// The audit chain does not hold.
    #[error("audit log broken at entry {seq}: {reason}")]
    AuditBroken {
        /// The first entry that does not hold.
        seq: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// A bug.
    #[error("internal error (this is a bug): {0}")]
    Internal(String),
}

/// Result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Schema migrations, in order; entry `i` takes the schema from version `i` to `i + 1`.
/// Never edit one that has shipped: add the next.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE datasets (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL
);
CREATE TABLE dataset_versions (
    dataset_id  INTEGER NOT NULL REFERENCES datasets(id),
    version     INTEGER NOT NULL,
    path        TEXT NOT NULL,
    rows        INTEGER NOT NULL,
    schema_json TEXT NOT NULL,
    source      TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    created_ms  INTEGER NOT NULL,
    PRIMARY KEY (dataset_id, version)
);
CREATE TABLE collaborations (
    id         TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,
    state      TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL,
    collaboration TEXT,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'retrying', 'done', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    progress      TEXT NOT NULL DEFAULT '{}',
    error         TEXT,
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL
);
CREATE TABLE audit_log (
    seq       INTEGER PRIMARY KEY,
    ts_ms     INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    details   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#,
    r#"
CREATE TABLE budget_ledger (
    id            INTEGER PRIMARY KEY,
    collaboration TEXT NOT NULL,
    analyst       TEXT NOT NULL,
    query_hash    TEXT NOT NULL,
    epsilon       REAL NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('reserved', 'charged', 'refunded')),
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL
);
CREATE INDEX budget_ledger_by_analyst ON budget_ledger (collaboration, analyst);
CREATE TABLE query_cache (
    collaboration TEXT NOT NULL,
    analyst       TEXT NOT NULL,
    query_hash    TEXT NOT NULL,
    answer        TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    PRIMARY KEY (collaboration, analyst, query_hash)
);
"#,
    r#"
CREATE TABLE forget_requests (
    id            INTEGER PRIMARY KEY,
    collaboration TEXT NOT NULL,
    party         TEXT NOT NULL,
    record_id     TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('opt-out', 'delete')),
    created_ms    INTEGER NOT NULL,
    UNIQUE (collaboration, party, record_id, kind)
);
"#,
];

/// The hash before the first entry.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An open catalog.
#[derive(Debug)]
pub struct Catalog {
    conn: Connection,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When, in Unix milliseconds.
    pub ts_ms: i64,
    /// Who acted (a party, an analyst).
    pub actor: String,
    /// What kind of thing happened: `import`, `match`, `query`, `audience`, `export`, ….
    pub action: String,
    /// What it happened to (a dataset, a collaboration).
    pub subject: String,
    /// Details as JSON: counts, sizes and ids — never identifiers or rows.
    pub details: String,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// A job: long work that outlives a request (a match run, later imports and queries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    /// Its id.
    pub id: i64,
    /// `match`, ….
    pub kind: String,
    /// The collaboration it belongs to.
    pub collaboration: Option<String>,
    /// `queued`, `running`, `retrying`, `done` or `failed`.
    pub state: String,
    /// Attempts so far.
    pub attempts: i64,
    /// Progress as JSON (for a match: the run id, who has contributed).
    pub progress: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Created, Unix ms.
    pub created_ms: i64,
    /// Last changed, Unix ms.
    pub updated_ms: i64,
}

/// A data subject's request recorded with `jingteng forget`: an opt-out of activation
/// or a deletion, of one record at one party.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForgetRequest {
    /// The party holding the record.
    pub party: String,
    /// The party's own record id (it stays with the party's catalog).
    pub record_id: String,
    /// `opt-out` or `delete`.
    pub kind: String,
    /// When it was recorded, Unix ms.
    pub created_ms: i64,
}

/// One line of the privacy-budget ledger: ε reserved for one query of one analyst.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetEntry {
    /// Who asked (at a host, `party:analyst`).
    pub analyst: String,
    /// ε of the query.
    pub epsilon: f64,
    /// `reserved` (the query runs), `charged` (released) or `refunded` (it failed).
    pub state: String,
    /// Reserved, Unix ms.
    pub created_ms: i64,
    /// Last settled, Unix ms.
    pub updated_ms: i64,
}

/// A dataset version as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatasetVersion {
    /// Dataset name (`social/users`).
    pub name: String,
    /// Version, from 1.
    pub version: i64,
    /// Where its data is, relative to the node's data directory.
    pub path: String,
    /// Rows.
    pub rows: i64,
    /// Its schema, as JSON.
    pub schema_json: String,
    /// The file it was imported from.
    pub source: String,
    /// SHA-256 of the stored data.
    pub sha256: String,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The chained hash of an entry: SHA-256 over its fields, each length-prefixed.
fn entry_hash(
    seq: i64,
    ts_ms: i64,
    actor: &str,
    action: &str,
    subject: &str,
    details: &str,
    prev: &str,
) -> String {
    let mut h = Sha256::new();
    h.update(b"jingteng-audit-v1");
    for part in [
        seq.to_string().as_bytes(),
        ts_ms.to_string().as_bytes(),
        actor.as_bytes(),
        action.as_bytes(),
        subject.as_bytes(),
        details.as_bytes(),
        prev.as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Catalog {
    /// Opens (creating if needed) the catalog at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        Self::setup(conn)
    }

    /// An in-memory catalog (tests).
    pub fn in_memory() -> Result<Self> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(mut conn: Connection) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let version: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = MIGRATIONS.len() as u32;
        if version > known {
            return Err(Error::TooNew {
                found: version,
                known,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as u32 + 1)?;
            tx.commit()?;
        }
        Ok(Self { conn })
    }

    /// The schema version.
    pub fn schema_version(&self) -> Result<u32> {
        Ok(self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?)
    }

    /// Appends an audit entry and returns it.
    pub fn audit(
        &mut self,
        actor: &str,
        action: &str,
        subject: &str,
        details: &serde_json::Value,
    ) -> Result<AuditEntry> {
        let tx = self.conn.transaction()?;
        let entry = append(&tx, actor, action, subject, details)?;
        tx.commit()?;
        Ok(entry)
    }

    /// Every audit entry, in order.
    pub fn audit_entries(&self) -> Result<Vec<AuditEntry>> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, ts_ms, actor, action, subject, details, prev_hash, hash FROM audit_log ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(AuditEntry {
                seq: r.get(0)?,
                ts_ms: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                subject: r.get(4)?,
                details: r.get(5)?,
                prev_hash: r.get(6)?,
                hash: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Checks the whole audit chain; returns the number of entries, or names the first
    /// entry that does not hold.
    pub fn verify_audit(&self) -> Result<u64> {
        let entries = self.audit_entries()?;
        let mut prev = GENESIS.to_string();
        for (i, e) in entries.iter().enumerate() {
            let expected_seq = i as i64 + 1;
            if e.seq != expected_seq {
                return Err(Error::AuditBroken {
                    seq: expected_seq,
                    reason: format!("missing: the next entry present is {}", e.seq),
                });
            }
            if e.prev_hash != prev {
                return Err(Error::AuditBroken {
                    seq: e.seq,
                    reason: "does not follow the entry before it (previous hash differs)".into(),
                });
            }
            let h = entry_hash(
                e.seq,
                e.ts_ms,
                &e.actor,
                &e.action,
                &e.subject,
                &e.details,
                &e.prev_hash,
            );
            if h != e.hash {
                return Err(Error::AuditBroken {
                    seq: e.seq,
                    reason: format!("its content was changed ({} {})", e.action, e.subject),
                });
            }
            prev = e.hash.clone();
        }
        let head: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'audit_head'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let expected_head = head.unwrap_or_else(|| format!("0:{GENESIS}"));
        let actual_head = format!("{}:{prev}", entries.len());
        if expected_head != actual_head {
            let seq = expected_head
                .split(':')
                .next()
                .and_then(|s| s.parse::<i64>().ok())
                .unwrap_or(0);
            return Err(Error::AuditBroken {
                seq,
                reason: format!(
                    "the log ends at entry {} but entry {seq} was its last: entries were removed from the end",
                    entries.len()
                ),
            });
        }
        Ok(entries.len() as u64)
    }

    /// Records a new version of a dataset (creating the dataset on its first version)
    /// and audits the import, in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub fn add_dataset_version(
        &mut self,
        actor: &str,
        name: &str,
        path: &str,
        rows: i64,
        schema_json: &str,
        source: &str,
        sha256: &str,
    ) -> Result<DatasetVersion> {
        let tx = self.conn.transaction()?;
        let now = now_ms();
        tx.execute(
            "INSERT INTO datasets (name, created_ms) VALUES (?1, ?2) ON CONFLICT(name) DO NOTHING",
            params![name, now],
        )?;
        let id: i64 = tx.query_row("SELECT id FROM datasets WHERE name = ?1", [name], |r| {
            r.get(0)
        })?;
        let version: i64 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM dataset_versions WHERE dataset_id = ?1",
            [id],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO dataset_versions (dataset_id, version, path, rows, schema_json, source, sha256, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![id, version, path, rows, schema_json, source, sha256, now],
        )?;
        append(
            &tx,
            actor,
            "import",
            name,
            &serde_json::json!({"version": version, "rows": rows, "sha256": sha256}),
        )?;
        tx.commit()?;
        Ok(DatasetVersion {
            name: name.to_string(),
            version,
            path: path.to_string(),
            rows,
            schema_json: schema_json.to_string(),
            source: source.to_string(),
            sha256: sha256.to_string(),
        })
    }

    /// The latest version of every dataset, by name.
    pub fn datasets(&self) -> Result<Vec<DatasetVersion>> {
        let mut stmt = self.conn.prepare(
            "SELECT d.name, v.version, v.path, v.rows, v.schema_json, v.source, v.sha256
             FROM datasets d JOIN dataset_versions v ON v.dataset_id = d.id
             WHERE v.version = (SELECT MAX(version) FROM dataset_versions WHERE dataset_id = d.id)
             ORDER BY d.name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(DatasetVersion {
                name: r.get(0)?,
                version: r.get(1)?,
                path: r.get(2)?,
                rows: r.get(3)?,
                schema_json: r.get(4)?,
                source: r.get(5)?,
                sha256: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// ε an analyst has spent or reserved in a collaboration.
    pub fn budget_spent(&self, collaboration: &str, analyst: &str) -> Result<f64> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(SUM(epsilon), 0) FROM budget_ledger
             WHERE collaboration = ?1 AND analyst = ?2 AND state IN ('reserved', 'charged')",
            params![collaboration, analyst],
            |r| r.get(0),
        )?)
    }

    /// The budget ledger of a collaboration, oldest first: every reservation of every
    /// analyst with its state (what the dashboard's privacy-budget page shows).
    pub fn budget_entries(&self, collaboration: &str) -> Result<Vec<BudgetEntry>> {
        let mut stmt = self.conn.prepare(
            "SELECT analyst, epsilon, state, created_ms, updated_ms FROM budget_ledger
             WHERE collaboration = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![collaboration], |r| {
            Ok(BudgetEntry {
                analyst: r.get(0)?,
                epsilon: r.get(1)?,
                state: r.get(2)?,
                created_ms: r.get(3)?,
                updated_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Reserves `epsilon` of an analyst's budget before a query runs. Returns the
    /// reservation's id, or `None` (nothing reserved) when it would exceed `limit`.
    pub fn reserve_budget(
        &mut self,
        collaboration: &str,
        analyst: &str,
        query_hash: &str,
        epsilon: f64,
        limit: f64,
    ) -> Result<Option<i64>> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let spent: f64 = tx.query_row(
            "SELECT COALESCE(SUM(epsilon), 0) FROM budget_ledger
             WHERE collaboration = ?1 AND analyst = ?2 AND state IN ('reserved', 'charged')",
            params![collaboration, analyst],
            |r| r.get(0),
        )?;
        // A small tolerance so that spending exactly the budget in equal parts works.
        if spent + epsilon > limit + 1e-9 {
            return Ok(None);
        }
        let now = now_ms();
        tx.execute(
            "INSERT INTO budget_ledger (collaboration, analyst, query_hash, epsilon, state, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, 'reserved', ?5, ?5)",
            params![collaboration, analyst, query_hash, epsilon, now],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(Some(id))
    }

    /// Settles a reservation: charged when the answer was released, refunded when the
    /// query failed.
    pub fn settle_budget(&mut self, id: i64, charged: bool) -> Result<()> {
        let state = if charged { "charged" } else { "refunded" };
        let n = self.conn.execute(
            "UPDATE budget_ledger SET state = ?1, updated_ms = ?2 WHERE id = ?3 AND state = 'reserved'",
            params![state, now_ms(), id],
        )?;
        if n != 1 {
            return Err(Error::Internal(format!("no open budget reservation {id}")));
        }
        Ok(())
    }

    /// A released answer kept for identical re-runs, which cost nothing.
    pub fn cached_answer(
        &self,
        collaboration: &str,
        analyst: &str,
        query_hash: &str,
    ) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT answer FROM query_cache WHERE collaboration = ?1 AND analyst = ?2 AND query_hash = ?3",
                params![collaboration, analyst, query_hash],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Keeps a released answer for identical re-runs.
    pub fn cache_answer(
        &mut self,
        collaboration: &str,
        analyst: &str,
        query_hash: &str,
        answer: &str,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO query_cache (collaboration, analyst, query_hash, answer, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![collaboration, analyst, query_hash, answer, now_ms()],
        )?;
        Ok(())
    }

    /// Drops every cached answer of a collaboration (after a deletion, answers computed
    /// over the deleted person's rows must not be served again); returns how many.
    pub fn clear_query_cache(&mut self, collaboration: &str) -> Result<usize> {
        Ok(self.conn.execute(
            "DELETE FROM query_cache WHERE collaboration = ?1",
            params![collaboration],
        )?)
    }

    /// Records an opt-out or deletion of `record_id` at `party`; `false` when the same
    /// request was already recorded.
    pub fn record_forget(
        &mut self,
        collaboration: &str,
        party: &str,
        record_id: &str,
        kind: &str,
    ) -> Result<bool> {
        if !matches!(kind, "opt-out" | "delete") {
            return Err(Error::Internal(format!("forget kind {kind:?}")));
        }
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO forget_requests (collaboration, party, record_id, kind, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![collaboration, party, record_id, kind, now_ms()],
        )?;
        Ok(n == 1)
    }

    /// Every opt-out and deletion recorded for a collaboration, oldest first.
    pub fn forget_requests(&self, collaboration: &str) -> Result<Vec<ForgetRequest>> {
        let mut stmt = self.conn.prepare(
            "SELECT party, record_id, kind, created_ms FROM forget_requests
             WHERE collaboration = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![collaboration], |r| {
            Ok(ForgetRequest {
                party: r.get(0)?,
                record_id: r.get(1)?,
                kind: r.get(2)?,
                created_ms: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
    }

    /// Records a new job in state `running`; returns its id.
    pub fn start_job(
        &mut self,
        kind: &str,
        collaboration: Option<&str>,
        progress: &serde_json::Value,
    ) -> Result<i64> {
        let now = now_ms();
        self.conn.execute(
            "INSERT INTO jobs (kind, collaboration, state, attempts, progress, created_ms, updated_ms)
             VALUES (?1, ?2, 'running', 1, ?3, ?4, ?4)",
            params![kind, collaboration, progress.to_string(), now],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Moves a job to `done` or `failed` (with the error).
    pub fn finish_job(&mut self, id: i64, error: Option<&str>) -> Result<()> {
        let state = if error.is_some() { "failed" } else { "done" };
        let changed = self.conn.execute(
            "UPDATE jobs SET state = ?1, error = ?2, updated_ms = ?3 WHERE id = ?4",
            params![state, error, now_ms(), id],
        )?;
        if changed == 0 {
            return Err(Error::Internal(format!("no job {id}")));
        }
        Ok(())
    }

    /// Records a job's progress (JSON) and its state while it runs: `running`, or
    /// `retrying` while a peer it needs does not answer.
    pub fn update_job(&mut self, id: i64, state: &str, progress: &serde_json::Value) -> Result<()> {
        if !matches!(state, "running" | "retrying") {
            return Err(Error::Internal(format!(
                "update_job to {state:?}: only running or retrying (finish_job ends a job)"
            )));
        }
        let changed = self.conn.execute(
            "UPDATE jobs SET state = ?1, progress = ?2, updated_ms = ?3
             WHERE id = ?4 AND state IN ('queued', 'running', 'retrying')",
            params![state, progress.to_string(), now_ms(), id],
        )?;
        if changed == 0 {
            return Err(Error::Internal(format!("no unfinished job {id}")));
        }
        Ok(())
    }

    /// Takes up an unfinished job again (after a restart): it is `running` once more and
    /// its attempts grow by one. Returns the attempts so far, this one included.
    pub fn resume_job(&mut self, id: i64) -> Result<i64> {
        let changed = self.conn.execute(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, updated_ms = ?1
             WHERE id = ?2 AND state IN ('queued', 'running', 'retrying')",
            params![now_ms(), id],
        )?;
        if changed == 0 {
            return Err(Error::Internal(format!("no unfinished job {id}")));
        }
        Ok(self
            .conn
            .query_row("SELECT attempts FROM jobs WHERE id = ?1", [id], |r| {
                r.get(0)
            })?)
    }

    /// Every job, newest first.
    pub fn jobs(&self) -> Result<Vec<Job>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, kind, collaboration, state, attempts, progress, error, created_ms, updated_ms
             FROM jobs ORDER BY id DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Job {
                id: r.get(0)?,
                kind: r.get(1)?,
                collaboration: r.get(2)?,
                state: r.get(3)?,
                attempts: r.get(4)?,
                progress: r.get(5)?,
                error: r.get(6)?,
                created_ms: r.get(7)?,
                updated_ms: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Stores a collaboration's contract (JSON) and state, replacing an earlier one with
    /// the same id.
    pub fn put_collaboration(&mut self, id: &str, contract: &str, state: &str) -> Result<()> {
        self.conn.execute(
            "INSERT INTO collaborations (id, spec, state, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET spec = excluded.spec, state = excluded.state",
            params![id, contract, state, now_ms()],
        )?;
        Ok(())
    }

    /// Every collaboration: (id, contract JSON, state).
    pub fn collaborations(&self) -> Result<Vec<(String, String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, spec, state FROM collaborations ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Sets a metadata value (node name and the like; never secrets).
    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        if key == "audit_head" {
            return Err(Error::Internal(
                "audit_head is kept by the audit log".into(),
            ));
        }
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// A metadata value.
    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }
}

/// Appends an entry within a transaction: chained to the current head, which moves.
fn append(
    tx: &Transaction<'_>,
    actor: &str,
    action: &str,
    subject: &str,
    details: &serde_json::Value,
) -> Result<AuditEntry> {
    let (last_seq, prev): (i64, String) = tx
        .query_row(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, GENESIS.to_string()));
    let seq = last_seq + 1;
    let ts_ms = now_ms();
    let details = serde_json::to_string(details).map_err(|e| Error::Internal(e.to_string()))?;
    let hash = entry_hash(seq, ts_ms, actor, action, subject, &details, &prev);
    tx.execute(
        "INSERT INTO audit_log (seq, ts_ms, actor, action, subject, details, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![seq, ts_ms, actor, action, subject, details, prev, hash],
    )?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('audit_head', ?1)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [format!("{seq}:{hash}")],
    )?;
    Ok(AuditEntry {
        seq,
        ts_ms,
        actor: actor.to_string(),
        action: action.to_string(),
        subject: subject.to_string(),
        details,
        prev_hash: prev,
        hash,
    })
}
