//! Scheduled refresh of audiences at the host: an audience whose definition sets
//! `refresh = "24h"` is delivered again, on the host's own initiative, once its latest
//! version is that old — by the same path as `jingteng audience deliver` (consent
//! check, evaluation on the current view, size release charged to the member and
//! analyst that defined it, rows to the activation party only).
//!
//! `jingteng serve` runs [`run`] as a background task at a host: once at start, then
//! every [`crate::ServeOptions::refresh_tick`] (30 s by default) it delivers every
//! audience that is due. When an audience is due:
//!
//! - **never delivered**: at once (the first scheduled version follows `create` within
//!   one tick);
//! - **delivered**: when its latest version (scheduled or on demand) is one interval
//!   old;
//! - **after a failed refresh** (budget spent, consent withdrawn, under its minimum,
//!   the media node away, …): `FIRST_RETRY` (5 minutes) after the failure, doubling
//!   with each further failure, never later than one interval: a failing audience is
//!   retried with backoff, never in a loop.
//!
//! Each attempt is written to `audiences/<name>/refresh.json` at the host (when, how
//! many failures in a row, the last error) and audited: `audience-refresh` (version,
//! size class, released size) or `audience-refresh-failed` (the error's code and
//! text); both name the audience, never people. A failure is also logged (`tracing`,
//! warn); nothing a refresh meets stops the server or the other audiences.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jingteng_audience::{Definition, Refresh, Store, VersionRecord};
use serde::{Deserialize, Serialize};

use crate::audiences::{Owner, audiences_dir, audit, read_owner, write_atomic};
use crate::contract::ContractBody;
use crate::retry::Halt;
use crate::{NodeDir, RetryPolicy};

/// The first wait after a failed refresh; it doubles with each further failure and is
/// never longer than the audience's interval.
const FIRST_RETRY: Duration = Duration::from_secs(5 * 60);

/// An audience's scheduled refresh, as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshStatus {
    /// The interval (`"90m"`, `"12h"`, `"1d"`).
    pub every: String,
    /// When the host's scheduler delivers the next version, Unix ms (it runs every 30 s
    /// by default, so up to that much later).
    pub next_due_ms: i64,
    /// Scheduled refreshes that failed in a row since the latest version.
    pub failures: u32,
    /// The latest failure's problem code and text, while `failures` is not 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the scheduler last tried, Unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_ms: Option<i64>,
}

/// `audiences/<name>/refresh.json` at the host: the scheduler's last attempt.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Attempt {
    /// Unix ms (the scheduler's clock).
    at_ms: i64,
    /// Failed attempts in a row, this one included (0: it succeeded).
    failures: u32,
    /// The failure's problem code and text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

fn attempt_path(root: &Path, name: &str) -> PathBuf {
    root.join("audiences").join(name).join("refresh.json")
}

/// The last attempt; a missing or unreadable file reads as none (the audience is then
/// judged by its versions alone).
fn read_attempt(root: &Path, name: &str) -> Option<Attempt> {
    let bytes = std::fs::read(attempt_path(root, name)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The wait after `failures` failed refreshes in a row.
fn backoff(every: Refresh, failures: u32) -> i64 {
    let first = FIRST_RETRY.as_millis() as i64;
    let factor = 1i64
        .checked_shl(failures.saturating_sub(1).min(30))
        .unwrap_or(i64::MAX);
    first.saturating_mul(factor).min(every.millis())
}

/// When an audience is next due (Unix ms), and the failures in a row that count: those
/// after its latest version (a later on-demand delivery clears them).
fn next_due(
    every: Refresh,
    defined_ms: i64,
    latest_ms: Option<i64>,
    attempt: Option<&Attempt>,
) -> (i64, Option<&Attempt>) {
    let base = latest_ms.map_or(defined_ms, |t| t.saturating_add(every.millis()));
    match attempt {
        Some(a) if a.failures > 0 && latest_ms.is_none_or(|t| a.at_ms >= t) => (
            base.max(a.at_ms.saturating_add(backoff(every, a.failures))),
            Some(a),
        ),
        _ => (base, None),
    }
}

/// The refresh status of an audience (`None` when its definition sets no interval).
pub(crate) fn status(
    root: &Path,
    def: &Definition,
    owner: Option<&Owner>,
    versions: &[VersionRecord],
) -> Option<RefreshStatus> {
    let every = def.refresh()?;
    let attempt = read_attempt(root, def.name());
    let (next_due_ms, failing) = next_due(
        every,
        owner.map_or(0, |o| o.created_ms),
        versions.last().map(|v| v.created_ms),
        attempt.as_ref(),
    );
    Some(RefreshStatus {
        every: every.to_string(),
        next_due_ms,
        failures: failing.map_or(0, |a| a.failures),
        last_error: failing.and_then(|a| a.error.clone()),
        last_attempt_ms: attempt.as_ref().map(|a| a.at_ms),
    })
}

/// What the scheduler needs from the server.
#[derive(Debug, Clone)]
pub(crate) struct Scheduler {
    /// The node's data directory.
    pub(crate) dir: Arc<PathBuf>,
    /// This node's party.
    pub(crate) party: String,
    /// Active collaborations (the scheduler serves those this node hosts).
    pub(crate) contracts: Arc<BTreeMap<String, ContractBody>>,
    /// The lock on the audiences this node keeps (shared with the API).
    pub(crate) lock: Arc<tokio::sync::Mutex<()>>,
    /// How often it looks for due audiences.
    pub(crate) tick: Duration,
    /// How deliveries to the activation party are retried.
    pub(crate) retry: RetryPolicy,
    /// Added to the system clock (ms): tests move time forward.
    pub(crate) skew: Arc<AtomicI64>,
}

impl Scheduler {
    fn now_ms(&self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        wall.saturating_add(self.skew.load(Ordering::Relaxed))
    }
}

/// The scheduler task: looks for due audiences at once, then every tick, until `stop`
/// is set (the server stops). Returns when stopped.
pub(crate) async fn run(s: Scheduler, stop: Halt) {
    let hosted: Vec<(String, ContractBody)> = s
        .contracts
        .iter()
        .filter(|(_, body)| {
            jingteng_psi::Collaboration::parse(&body.spec)
                .ok()
                .and_then(|c| c.host().map(str::to_string))
                .as_deref()
                == Some(s.party.as_str())
        })
        .map(|(id, body)| (id.clone(), body.clone()))
        .collect();
    if hosted.is_empty() {
        return;
    }
    loop {
        for (id, body) in &hosted {
            if stop.is_set() {
                return;
            }
            tick(&s, id, body, &stop).await;
        }
        if !stop.sleep(s.tick).await {
            return;
        }
    }
}

/// One look at a collaboration's audiences: delivers those due.
async fn tick(s: &Scheduler, id: &str, body: &ContractBody, stop: &Halt) {
    let root = audiences_dir(&s.dir, id);
    let store = Store::new(&root);
    let names = match store.names() {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(collaboration = id, error = %e, "audience refresh: cannot list the audiences");
            return;
        }
    };
    for name in names {
        if stop.is_set() {
            return;
        }
        if due(s, &root, &store, &name).is_some() {
            // Each refresh runs as its own task: even a bug that panics in it ends that
            // refresh only, never the scheduler.
            let task = tokio::spawn(refresh(
                s.clone(),
                id.to_string(),
                body.clone(),
                name.clone(),
                stop.clone(),
            ));
            if let Err(e) = task.await {
                tracing::error!(collaboration = id, audience = %name, error = %e, "audience refresh: the refresh task failed (this is a bug)");
            }
        }
    }
}

/// The audience's interval and owner when it is due now; `None` otherwise (no
/// interval, not due, or unreadable: logged).
fn due(s: &Scheduler, root: &Path, store: &Store, name: &str) -> Option<(Refresh, Option<Owner>)> {
    let def = match store.definition(name) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(audience = name, error = %e, "audience refresh: cannot read the definition");
            return None;
        }
    };
    let every = def.refresh()?;
    let owner = read_owner(root, name).ok().flatten();
    let versions = store.versions(name).ok()?;
    let attempt = read_attempt(root, name);
    let (at, _) = next_due(
        every,
        owner.as_ref().map_or(0, |o| o.created_ms),
        versions.last().map(|v| v.created_ms),
        attempt.as_ref(),
    );
    (at <= s.now_ms()).then_some((every, owner))
}

/// Delivers the next version of `name` if it is still due (checked again under the
/// lock: a member may have delivered it meanwhile), records the attempt and audits it.
async fn refresh(s: Scheduler, id: String, body: ContractBody, name: String, stop: Halt) {
    let root = audiences_dir(&s.dir, &id);
    let store = Store::new(&root);
    let _guard = s.lock.lock().await;
    let Some((every, owner)) = due(&s, &root, &store, &name) else {
        return;
    };
    let now = s.now_ms();
    let previous = {
        let latest = store
            .versions(&name)
            .ok()
            .and_then(|v| v.last().map(|v| v.created_ms));
        read_attempt(&root, &name)
            .filter(|a| a.failures > 0 && latest.is_none_or(|t| a.at_ms >= t))
            .map_or(0, |a| a.failures)
    };
    let result = match (&owner, NodeDir::open(&s.dir)) {
        (
            Some(Owner {
                party,
                analyst: Some(analyst),
                ..
            }),
            Ok(node),
        ) => crate::audiences::deliver_locked(
            &node, &body, party, &name, analyst, now, s.retry, &stop,
        )
        .await
        .map(|d| (d, format!("{party}:{analyst}"))),
        (_, Err(e)) => Err(crate::remote::internal(&e)),
        _ => Err((
            axum::http::StatusCode::CONFLICT,
            "no-owner",
            format!(
                "audience {name:?} does not record the member and analyst that defined it (it predates scheduled refresh): that member creates it again"
            ),
        )),
    };
    if stop.is_set() && result.is_err() {
        // The server is stopping: not a failure of the audience.
        return;
    }
    let actor = owner
        .as_ref()
        .map_or(s.party.as_str(), |o| o.party.as_str());
    let (attempt, action, details) = match &result {
        Ok((d, charged)) => {
            tracing::info!(
                collaboration = %id,
                audience = %name,
                version = d.record.version,
                to = %d.record.to,
                "audience refreshed"
            );
            (
                Attempt {
                    at_ms: now,
                    failures: 0,
                    error: None,
                },
                "audience-refresh",
                serde_json::json!({
                    "audience": name,
                    "version": d.record.version,
                    "to": d.record.to,
                    "analyst": charged,
                    "every": every.to_string(),
                    "size_class": d.record.size_class,
                    "released_people": d.size.people,
                    "scheduled_by": s.party,
                }),
            )
        }
        Err((_, code, detail)) => {
            let failures = previous.saturating_add(1);
            let retry_at = now.saturating_add(backoff(every, failures));
            tracing::warn!(
                collaboration = %id,
                audience = %name,
                code = %code,
                failures,
                retry_at_ms = retry_at,
                "audience refresh failed: {detail}"
            );
            (
                Attempt {
                    at_ms: now,
                    failures,
                    error: Some(format!("{code}: {detail}")),
                },
                "audience-refresh-failed",
                serde_json::json!({
                    "audience": name,
                    "code": code,
                    "error": detail,
                    "failures": failures,
                    "retry_at_ms": retry_at,
                    "every": every.to_string(),
                    "scheduled_by": s.party,
                }),
            )
        }
    };
    match serde_json::to_vec_pretty(&attempt) {
        Ok(bytes) => {
            if let Err(e) = write_atomic(&attempt_path(&root, &name), &bytes) {
                tracing::error!(audience = %name, error = %e, "audience refresh: cannot record the attempt");
            }
        }
        Err(e) => {
            tracing::error!(audience = %name, error = %e, "audience refresh: cannot record the attempt")
        }
    }
    if let Err((_, _, e)) = audit(&s.dir, actor, action, &id, details) {
        tracing::error!(audience = %name, error = %e, "audience refresh: cannot write the audit entry");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn due_times_follow_versions_and_back_off_after_failures() {
        let day = Refresh::parse("1d").unwrap();
        let h = 3_600_000;
        // Never delivered: due when defined.
        assert_eq!(next_due(day, 7, None, None).0, 7);
        // Delivered: one interval after the latest version.
        assert_eq!(next_due(day, 7, Some(100), None).0, 100 + 24 * h);
        // Failed once, twice, …: 5 min, 10 min, … after the failure, at most a day.
        let failed = |n, at| Attempt {
            at_ms: at,
            failures: n,
            error: Some("x".into()),
        };
        let due = 100 + 24 * h;
        let after = |n| next_due(day, 7, Some(100), Some(&failed(n, due))).0;
        assert_eq!(after(1), due + 300_000);
        assert_eq!(after(2), due + 600_000);
        assert_eq!(after(40), due + 24 * h);
        // A version delivered after the failure (on demand) clears it.
        let three = failed(3, due);
        let (at, failing) = next_due(day, 7, Some(due + 1), Some(&three));
        assert_eq!((at, failing.is_none()), (due + 1 + 24 * h, true));
        // A success resets the count.
        let ok = Attempt {
            at_ms: due,
            failures: 0,
            error: None,
        };
        assert_eq!(next_due(day, 7, Some(due), Some(&ok)).0, due + 24 * h);
        // The backoff never exceeds a short interval.
        let minute = Refresh::parse("1m").unwrap();
        assert_eq!(backoff(minute, 1), 60_000);
    }
}
