//! Turning a definition into people (trusted code at the host) and releasing only its
//! size, through the engine's check and release.

use std::collections::HashSet;
use std::sync::Arc;

use jingteng_engine::datafusion::arrow::array::{Array, AsArray, RecordBatch, UInt64Array};
use jingteng_engine::datafusion::arrow::compute::cast;
use jingteng_engine::datafusion::arrow::datatypes::{DataType, Field, Schema, UInt64Type};
use jingteng_engine::datafusion::prelude::SessionContext;
use jingteng_engine::policy::{ColumnRule, Role};
use jingteng_engine::{Engine, ReleaseNote};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::definition::{Definition, identity_table, size_class, thousands};
use crate::lookalike::{self, LookalikeReport};
use crate::{DEFAULT_MIN_SIZE, Error, Result};

/// Look-alike seeds must have between 2,000 and 30 million people (Tencent Ads' bounds).
pub const SEED_BOUNDS: (u64, u64) = (2_000, 30_000_000);

/// An evaluated audience. It holds people of the joined view: trusted code only (the
/// host delivers it and releases its size); nothing here is shown to an analyst.
#[derive(Debug, Clone)]
pub struct Evaluation {
    name: String,
    members: Vec<u64>,
    min_size: u64,
    rules: Vec<(String, String)>,
    lookalike: Option<LookalikeReport>,
    hash: String,
    tables: Vec<String>,
}

impl Evaluation {
    /// The audience's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its people (person ids of the joined view), sorted. Trusted code only.
    pub fn members(&self) -> &[u64] {
        &self.members
    }

    /// Each rule as written and the SQL it ran as.
    pub fn rules(&self) -> &[(String, String)] {
        &self.rules
    }

    /// The look-alike report, when the definition asks for one.
    pub fn lookalike(&self) -> Option<&LookalikeReport> {
        self.lookalike.as_ref()
    }

    /// The size class of the audience (never the exact size).
    pub fn size_class(&self) -> String {
        size_class(self.members.len() as u64, self.min_size)
    }

    /// The minimum size that applied.
    pub fn min_size(&self) -> u64 {
        self.min_size
    }

    /// The tables it read.
    pub fn tables(&self) -> &[String] {
        &self.tables
    }

    /// A hash of the definition and the view it was evaluated on.
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

pub(crate) async fn people(ctx: &SessionContext, sql: &str) -> Result<HashSet<u64>> {
    let batches = ctx.sql(sql).await?.collect().await?;
    let mut out = HashSet::new();
    for b in &batches {
        let col = cast(b.column(0), &DataType::UInt64)?;
        let col = col.as_primitive::<UInt64Type>();
        for i in 0..col.len() {
            if col.is_valid(i) {
                out.insert(col.value(i));
            }
        }
    }
    Ok(out)
}

/// Evaluates a definition over the engine's joined view: the activation party's users
/// who match every include rule and no exclude rule, then (when asked) the look-alike
/// expansion. `now` (Unix seconds) is what `within N days` counts back from when the
/// definition sets no `as_of`; `default_min` applies when it sets no `min_size`.
///
/// Refuses, with the size class only, an audience under its minimum, and a look-alike
/// seed outside 2,000–30,000,000.
pub async fn evaluate(
    engine: &Engine,
    def: &Definition,
    now: i64,
    default_min: Option<u64>,
) -> Result<Evaluation> {
    let policy = engine.policy();
    def.check(policy)?;
    let ctx = engine.session();
    let as_of = def.as_of(now);
    let universe_table = identity_table(policy, def.activate())?;
    let (party, table) = universe_table
        .split_once('.')
        .ok_or_else(|| Error::Internal(format!("table name {universe_table}")))?;
    let mut members = people(
        ctx,
        &format!("SELECT DISTINCT person FROM \"{party}\".\"{table}\""),
    )
    .await?;
    let mut rules = Vec::new();
    for r in def.include() {
        let sql = r.sql(as_of);
        let set = people(ctx, &sql).await?;
        members.retain(|p| set.contains(p));
        rules.push((format!("include {}", r.text()), sql));
    }
    for r in def.exclude() {
        let sql = r.sql(as_of);
        let set = people(ctx, &sql).await?;
        members.retain(|p| !set.contains(p));
        rules.push((format!("exclude {}", r.text()), sql));
    }
    let min_size = def.min_size(default_min.unwrap_or(DEFAULT_MIN_SIZE));
    let seed = members.len();
    if (seed as u64) < min_size {
        return Err(Error::TooSmall {
            name: def.name().to_string(),
            class: size_class(seed as u64, min_size),
            min: min_size,
        });
    }
    let mut h = Sha256::new();
    h.update(engine.fingerprint().as_bytes());
    h.update(def.to_toml()?.as_bytes());
    h.update(as_of.to_string().as_bytes());
    h.update(min_size.to_string().as_bytes());
    let hash: String = h
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut lookalike_report = None;
    if let Some(settings) = def.lookalike() {
        let n = seed as u64;
        if n < SEED_BOUNDS.0 {
            return Err(Error::Lookalike(format!(
                "the seed (audience {:?}) has {} people; a look-alike needs at least {}",
                def.name(),
                size_class(n, SEED_BOUNDS.0),
                thousands(SEED_BOUNDS.0)
            )));
        }
        if n > SEED_BOUNDS.1 {
            return Err(Error::Lookalike(format!(
                "the seed (audience {:?}) has more than {} people, the most a look-alike takes; narrow the rules",
                def.name(),
                thousands(SEED_BOUNDS.1)
            )));
        }
        let (added, report) =
            lookalike::expand(ctx, policy, def.activate(), &members, settings).await?;
        members.extend(added);
        lookalike_report = Some(report);
    }
    let mut members: Vec<u64> = members.into_iter().collect();
    members.sort_unstable();
    Ok(Evaluation {
        name: def.name().to_string(),
        members,
        min_size,
        rules,
        lookalike: lookalike_report,
        hash,
        tables: def.tables(policy).into_iter().collect(),
    })
}

/// An audience's size as released to the brand.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SizeRelease {
    /// The released people count (noisy in DP mode; exact in threshold mode); `None`
    /// when the release withheld it.
    pub people: Option<i64>,
    /// How it was released.
    pub release: ReleaseNote,
    /// Served from the answer cache (the same audience over the same view).
    pub cached: bool,
    /// ε left for the analyst (DP mode).
    pub budget_remaining: Option<f64>,
}

/// Releases an evaluated audience's size through the engine, as `analyst`: the people
/// are registered as a derived table (`audience.a_<hash>`, one row per person, with the
/// most restrictive settings of the tables the audience read) and counted by an
/// ordinary query, so the check, DP noise, budget, cache and audit all apply.
pub async fn release_size(
    engine: &mut Engine,
    eval: &Evaluation,
    analyst: &str,
) -> Result<SizeRelease> {
    let name = format!("audience.a_{}", eval.hash);
    let schema = Arc::new(Schema::new(vec![Field::new(
        jingteng_engine::PERSON,
        DataType::UInt64,
        false,
    )]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(UInt64Array::from(eval.members.clone()))],
    )?;
    let plan = engine.session().read_batch(batch)?.into_unoptimized_plan();
    let sources: Vec<&str> = eval.tables.iter().map(String::as_str).collect();
    engine
        .register_derived(
            &name,
            plan,
            vec![(
                jingteng_engine::PERSON.to_string(),
                ColumnRule {
                    role: Role::Person,
                    bounds: None,
                    aggregates: Vec::new(),
                },
            )],
            true,
            &sources,
        )
        .await?;
    let answer = engine
        .query(
            &format!("SELECT COUNT(DISTINCT person) AS people FROM {name}"),
            analyst,
        )
        .await?;
    let people = answer
        .rows
        .first()
        .and_then(|r| r.first())
        .and_then(serde_json::Value::as_i64);
    Ok(SizeRelease {
        people,
        release: answer.release,
        cached: answer.cached,
        budget_remaining: answer.budget.map(|b| b.remaining),
    })
}
