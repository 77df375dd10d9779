//! Ready analyses: named, parameterised queries. Each is plain SQL that goes through
//! the same check and release as any analyst's query, so a template can never release
//! more than the rules allow.

use crate::policy::{Policy, Role};
use crate::{Answer, Engine, Error, Result};

/// One query of an analysis and what it answers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Step {
    /// What this part shows.
    pub title: String,
    /// The SQL run.
    pub sql: String,
}

/// The names of the ready analyses, with what each takes.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "overlap",
        "people each pair and set of parties share (one query per set; the identity tables joined on person)",
    ),
    (
        "profile",
        "people by one dimension (`--dimension party.table.column`), optionally only those also known to `--of party`",
    ),
    (
        "cross-purchase",
        "people who bought category A and also category B at the retailer (`--table party.table`, default retail.orders; `--column`, default category)",
    ),
];

fn identity_tables(policy: &Policy) -> Vec<String> {
    policy
        .tables
        .values()
        .filter(|t| t.one_row_per_person)
        .map(|t| t.qualified())
        .collect()
}

fn unknown(what: String) -> Error {
    Error::Sql(what)
}

/// The queries of the overlap analysis: every set of two or more parties.
pub fn overlap(policy: &Policy) -> Vec<Step> {
    let ids = identity_tables(policy);
    let mut steps = Vec::new();
    let n = ids.len();
    for mask in 1u32..(1 << n) {
        if mask.count_ones() < 2 {
            continue;
        }
        let chosen: Vec<&String> = (0..n)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| &ids[i])
            .collect();
        let mut sql = format!("SELECT COUNT(*) AS people FROM {} t0", chosen[0]);
        for (i, t) in chosen.iter().enumerate().skip(1) {
            sql.push_str(&format!(" JOIN {t} t{i} ON t0.person = t{i}.person"));
        }
        let parties: Vec<&str> = chosen
            .iter()
            .map(|t| t.split('.').next().unwrap_or(t))
            .collect();
        steps.push(Step {
            title: parties.join(" ∩ "),
            sql,
        });
    }
    steps
}

/// The query of the profile analysis.
pub fn profile(policy: &Policy, dimension: &str, of: Option<&str>) -> Result<Step> {
    let (table, column) = dimension.rsplit_once('.').ok_or_else(|| {
        unknown(format!(
            "--dimension {dimension:?}: write party.table.column"
        ))
    })?;
    let rule = policy
        .tables
        .get(table)
        .ok_or_else(|| unknown(format!("--dimension: no table {table}")))?;
    match rule.columns.get(column).map(|c| c.role) {
        Some(Role::Dimension | Role::Timestamp) => {}
        _ => {
            return Err(unknown(format!(
                "--dimension: {column} is not a dimension of {table}"
            )));
        }
    }
    let mut sql = format!("SELECT d.{column}, COUNT(DISTINCT d.person) AS people FROM {table} d");
    let mut title = format!("people by {dimension}");
    if let Some(of) = of {
        let other = policy
            .tables
            .values()
            .find(|t| t.party == of && t.one_row_per_person)
            .ok_or_else(|| unknown(format!("--of: no party {of}")))?;
        sql.push_str(&format!(
            " JOIN {} o ON d.person = o.person",
            other.qualified()
        ));
        title.push_str(&format!(", among people also known to {of}"));
    }
    sql.push_str(&format!(" GROUP BY d.{column} ORDER BY people DESC"));
    Ok(Step { title, sql })
}

/// The query of the cross-purchase analysis.
pub fn cross_purchase(table: &str, column: &str) -> Step {
    Step {
        title: format!("people by pair of {column} bought ({table})"),
        sql: format!(
            "SELECT a.{column} AS bought, b.{column} AS also_bought, COUNT(DISTINCT a.person) AS people \
             FROM {table} a JOIN {table} b ON a.person = b.person \
             WHERE a.{column} <> b.{column} \
             GROUP BY a.{column}, b.{column} ORDER BY people DESC"
        ),
    }
}

/// Runs the steps of an analysis in order.
pub async fn run(engine: &Engine, steps: &[Step], analyst: &str) -> Result<Vec<(Step, Answer)>> {
    let mut out = Vec::new();
    for s in steps {
        let a = engine.query(&s.sql, analyst).await?;
        out.push((s.clone(), a));
    }
    Ok(out)
}
