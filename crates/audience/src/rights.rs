//! Data rights: a person's opt-out or deletion at any party (`jingteng forget`).
//!
//! The request is recorded in the catalog of the state folder; from then on the view
//! build ([`jingteng_engine::view::build_local`]) leaves the person out of every table
//! (the view's fingerprint changes, so it is rebuilt and no cached answer is reused),
//! the next version of every audience is evaluated without them, and the RTA index
//! suppresses their device. The answer cache is emptied at once. A deletion also
//! rewrites the versions already delivered, without them (after the view is rebuilt:
//! [`purge_delivered`]); an opt-out keeps the delivered history as it was, and
//! suppression stops its use in RTA.

use std::collections::HashSet;
use std::path::Path;

use jingteng_catalog::Catalog;
use jingteng_psi::Collaboration;
use serde::Serialize;

use crate::delivery::{Store, records};
use crate::{Error, Result};

/// What a person asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ForgetKind {
    /// No more personalised marketing: out of audiences, deliveries and RTA.
    OptOut,
    /// Erase: out of everything, and out of versions already delivered.
    Delete,
}

impl ForgetKind {
    /// As recorded: `opt-out` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            ForgetKind::OptOut => "opt-out",
            ForgetKind::Delete => "delete",
        }
    }
}

/// What `forget` did.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetReport {
    /// The party.
    pub party: String,
    /// What was asked.
    pub kind: ForgetKind,
    /// `false` when the same request had been recorded before.
    pub new: bool,
    /// Cached answers dropped.
    pub cache_cleared: usize,
}

/// Records an opt-out or deletion of `record_id` at `party` in `catalog` (the state
/// folder's), empties the answer cache and writes the audit entry (without the id).
pub fn forget(
    catalog: &mut Catalog,
    collab: &Collaboration,
    party: &str,
    record_id: &str,
    kind: ForgetKind,
    actor: &str,
) -> Result<ForgetReport> {
    if !collab.parties().iter().any(|p| p.name == party) {
        return Err(Error::Definition(format!(
            "no party {party:?} in the collaboration (parties: {})",
            collab
                .parties()
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let id = record_id.trim();
    if id.is_empty() {
        return Err(Error::Definition("the record id is empty".into()));
    }
    let new = catalog.record_forget(collab.id(), party, id, kind.as_str())?;
    let cache_cleared = catalog.clear_query_cache(collab.id())?;
    catalog.audit(
        actor,
        "forget",
        collab.id(),
        &serde_json::json!({"party": party, "kind": kind.as_str(), "new": new, "cache_cleared": cache_cleared}),
    )?;
    Ok(ForgetReport {
        party: party.to_string(),
        kind,
        new,
        cache_cleared,
    })
}

/// Rewrites every version delivered to any party without the users the rebuilt view
/// suppresses (deleted or opted out); returns the users removed. Run after the view
/// was rebuilt with the new requests.
pub fn purge_delivered(store: &Store, collab: &Collaboration, view_dir: &Path) -> Result<u64> {
    let mut removed = 0u64;
    for p in collab.parties() {
        let files = store.delivered_files(&p.name)?;
        if files.is_empty() {
            continue;
        }
        let gone: HashSet<String> = records(view_dir, &p.name)?
            .into_iter()
            .filter(|(_, _, s)| *s)
            .map(|(id, _, _)| id)
            .collect();
        let column = p
            .identity
            .record_id
            .clone()
            .unwrap_or_else(|| "user_id".into());
        for (name, version, file) in files {
            let ids = crate::delivery::read_ids_pub(&file)?;
            let kept: Vec<String> = ids.iter().filter(|i| !gone.contains(*i)).cloned().collect();
            if kept.len() != ids.len() {
                removed += (ids.len() - kept.len()) as u64;
                store.rewrite_delivered(&p.name, &name, version, &column, &kept)?;
            }
        }
    }
    Ok(removed)
}
