//! Jingteng's query engine: SQL over the pseudonymous joined view under privacy rules
//! the engine enforces (docs/privacy.md).
//!
//! A query goes: SQL → DataFusion logical plan (deny-by-default options: no DDL, DML or
//! statements) → [`check::check`] (lineage of every column; approve or refuse with the
//! rule) → [`exec`] (release aggregate computed alone, then suppressed under `k` people
//! or released with differential privacy, then the rest of the query over the
//! released rows) → an [`Answer`] that says how it was released. In DP mode every
//! answer first reserves ε from the analyst's budget in the catalog, is charged when
//! released and refunded when it fails; identical re-runs come from the cache, free.

pub mod bench;
pub mod check;
pub mod dp;
mod exec;
mod people;
mod per_person;
pub mod policy;
pub mod templates;
pub mod view;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::common::TableReference;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use jingteng_catalog::Catalog;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use check::{ApprovedPlan, Refusal};
/// DataFusion, as the engine uses it: Jingteng's other crates (measurement, audiences)
/// build their trusted plans with this, so DataFusion is a dependency of this crate only.
pub use datafusion;
pub use exec::{ColumnNoise, ReleaseNote};
pub use jingteng_psi::ReleaseMode;
pub use policy::{PERSON, Policy};
pub use view::ViewInfo;

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The query breaks a privacy rule.
    #[error("{0}")]
    Refused(Refusal),
    /// The analyst's privacy budget cannot pay for the query.
    #[error(
        "refused [budget-exhausted]: this query needs ε = {needed} but {analyst} has {remaining:.3} of {limit} left in this collaboration"
    )]
    BudgetExhausted {
        /// Who asked.
        analyst: String,
        /// ε the query needs.
        needed: f64,
        /// ε left.
        remaining: f64,
        /// The budget.
        limit: f64,
    },
    /// The query is not valid SQL or names something that does not exist.
    #[error("query: {0}")]
    Sql(String),
    /// The query went over its memory or time limit.
    #[error("refused [resource-limit]: {0}")]
    ResourceLimit(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An input file is wrong.
    #[error("{path}: {message}")]
    Input {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The match failed.
    #[error(transparent)]
    Match(#[from] jingteng_match::Error),
    /// The catalog failed.
    #[error(transparent)]
    Catalog(#[from] jingteng_catalog::Error),
    /// DataFusion failed while running an approved plan.
    #[error("query engine: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// A bug.
    #[error("internal error (this is a bug): {0}")]
    Internal(String),
}

impl From<datafusion::arrow::error::ArrowError> for Error {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        Self::DataFusion(e.into())
    }
}

impl From<datafusion::parquet::errors::ParquetError> for Error {
    fn from(e: datafusion::parquet::errors::ParquetError) -> Self {
        Self::DataFusion(e.into())
    }
}

impl From<check::CheckError> for Error {
    fn from(e: check::CheckError) -> Self {
        match e {
            check::CheckError::Refused(r) => Self::Refused(r),
            check::CheckError::Plan(e) => Self::DataFusion(e),
        }
    }
}

/// Result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Limits on one query.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Memory the query may use (bytes); joins and aggregates beyond it fail.
    pub memory_bytes: usize,
    /// Wall-clock time.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 4 << 30,
            timeout: Duration::from_secs(300),
        }
    }
}

/// The remaining budget, shown with every DP answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Budget {
    /// ε spent (and reserved) so far.
    pub spent: f64,
    /// The budget.
    pub limit: f64,
    /// ε left.
    pub remaining: f64,
}

/// A released answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows, as JSON values.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// How it was released.
    pub release: ReleaseNote,
    /// The analyst's budget after this answer (DP mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Served from the cache (an identical earlier query), at no cost.
    pub cached: bool,
}

/// The query engine over one joined view.
pub struct Engine {
    ctx: SessionContext,
    policy: Policy,
    collab_id: String,
    fingerprint: String,
    limits: Limits,
    catalog: Mutex<Catalog>,
}

/// Registers a built view's tables as `party.table` in `ctx` (also what benchmarks and
/// tests use to run plain DataFusion over the same files).
pub async fn register_view(ctx: &SessionContext, dir: &Path, info: &ViewInfo) -> Result<()> {
    let catalog = ctx
        .catalog("datafusion")
        .ok_or_else(|| Error::Internal("no default catalog".into()))?;
    for t in &info.tables {
        let (party, table) = t
            .name
            .split_once('.')
            .ok_or_else(|| Error::Internal(format!("table name {}", t.name)))?;
        if catalog.schema(party).is_none() {
            catalog.register_schema(party, Arc::new(MemorySchemaProvider::new()))?;
        }
        let path = dir.join("joined").join(&t.path);
        ctx.register_parquet(
            TableReference::partial(party, table),
            path.to_string_lossy().as_ref(),
            ParquetReadOptions::default(),
        )
        .await?;
    }
    Ok(())
}

impl Engine {
    /// Opens the engine over the view built in `dir`, with the catalog that keeps the
    /// budget ledger, the answer cache and the audit log.
    pub async fn open(
        collab: &jingteng_psi::Collaboration,
        dir: &Path,
        info: &ViewInfo,
        catalog: Catalog,
        limits: Limits,
    ) -> Result<Self> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .build_arc()?;
        let config = SessionConfig::new().with_information_schema(false);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        register_view(&ctx, dir, info).await?;
        Ok(Self {
            ctx,
            policy: Policy::from_collab(collab),
            collab_id: collab.id().to_string(),
            fingerprint: info.fingerprint.clone(),
            limits,
            catalog: Mutex::new(catalog),
        })
    }

    /// An engine over empty tables with the spec's columns (dimensions as text,
    /// measures as integers, timestamps as instants, `person`), for checking queries
    /// without data: `jingteng query --explain` before a view exists, and fuzzing.
    pub async fn for_checking(collab: &jingteng_psi::Collaboration) -> Result<Self> {
        use datafusion::arrow::datatypes::{Field, Schema};
        let ctx = SessionContext::new();
        let policy = Policy::from_collab(collab);
        let catalog = ctx
            .catalog("datafusion")
            .ok_or_else(|| Error::Internal("no default catalog".into()))?;
        for t in policy.tables.values() {
            if catalog.schema(&t.party).is_none() {
                catalog.register_schema(&t.party, Arc::new(MemorySchemaProvider::new()))?;
            }
            let fields: Vec<Field> = t
                .columns
                .iter()
                .map(|(name, rule)| Field::new(name, rule.role.data_type(), true))
                .collect();
            let table = datafusion::catalog::MemTable::try_new(
                Arc::new(Schema::new(fields)),
                vec![vec![]],
            )?;
            ctx.register_table(
                TableReference::partial(t.party.as_str(), t.table.as_str()),
                Arc::new(table),
            )?;
        }
        Ok(Self {
            ctx,
            policy,
            collab_id: collab.id().to_string(),
            fingerprint: String::new(),
            limits: Limits::default(),
            catalog: Mutex::new(Catalog::in_memory()?),
        })
    }

    /// The fingerprint of the view the engine reads (changes with the spec, the files
    /// and the data-rights exclusions).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The rules in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The DataFusion session over the raw joined view, for Jingteng's own trusted
    /// code (measurement, audiences) to build derived tables with; nothing read here
    /// leaves except through [`Engine::query`]. Never hand it to an analyst.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// Registers a table derived by trusted code from the view (e.g. one row per
    /// attributed order) as `schema.table`, so that analysts' and reports' SQL can
    /// aggregate it under the same check and release as any other table. Its rules:
    /// `columns` gives each column's role (the person id column must be named
    /// `person`); it inherits the most restrictive privacy settings of `sources`.
    pub async fn register_derived(
        &mut self,
        name: &str,
        plan: datafusion::logical_expr::LogicalPlan,
        columns: Vec<(String, policy::ColumnRule)>,
        one_row_per_person: bool,
        sources: &[&str],
    ) -> Result<()> {
        let (schema, table) = name
            .split_once('.')
            .ok_or_else(|| Error::Internal(format!("derived table {name}: write schema.table")))?;
        if plan.schema().fields().len() != columns.len()
            || plan
                .schema()
                .fields()
                .iter()
                .zip(&columns)
                .any(|(f, (c, _))| f.name() != c)
        {
            return Err(Error::Internal(format!(
                "derived table {name}: the rules must name the plan's columns in order"
            )));
        }
        let catalog = self
            .ctx
            .catalog("datafusion")
            .ok_or_else(|| Error::Internal("no default catalog".into()))?;
        if catalog.schema(schema).is_none() {
            catalog.register_schema(schema, Arc::new(MemorySchemaProvider::new()))?;
        }
        // Materialised (not a view, which the SQL planner would inline into the
        // analyst's plan, exposing the trusted derivation to the check).
        let arrow_schema = Arc::new(plan.schema().as_arrow().clone());
        let batches = self.ctx.execute_logical_plan(plan).await?.collect().await?;
        let batches = batches
            .into_iter()
            .map(|b| {
                datafusion::arrow::array::RecordBatch::try_new(
                    arrow_schema.clone(),
                    b.columns().to_vec(),
                )
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mem = datafusion::catalog::MemTable::try_new(arrow_schema, vec![batches])?;
        let reference = TableReference::partial(schema, table);
        self.ctx.deregister_table(reference.clone())?;
        self.ctx.register_table(reference, Arc::new(mem))?;
        let about_people = columns.iter().any(|(_, r)| r.role == policy::Role::Person);
        let rule = policy::TableRule {
            party: schema.to_string(),
            table: table.to_string(),
            about_people,
            one_row_per_person,
            columns: columns.into_iter().collect(),
            withheld: Default::default(),
            privacy: self.policy.combined(sources.iter().copied()),
        };
        self.policy.tables.insert(rule.qualified(), rule);
        Ok(())
    }

    /// Plans and checks a query without running it.
    pub async fn approve(&self, sql: &str) -> Result<ApprovedPlan> {
        let plan = match self.ctx.state().create_logical_plan(sql).await {
            Ok(p) => p,
            Err(e) => return Err(self.explain_planning_error(e)),
        };
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        if let Err(e) = options.verify_plan(&plan) {
            return Err(Error::Refused(Refusal {
                rule: "statement",
                message: e.strip_backtrace(),
                hint: "only SELECT queries may run in the room".into(),
            }));
        }
        Ok(check::check(&self.policy, &plan)?)
    }

    fn explain_planning_error(&self, e: datafusion::error::DataFusionError) -> Error {
        let msg = e.strip_backtrace();
        if let Some(rest) = msg.split("No field named ").nth(1) {
            let name: String = rest
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect::<String>()
                .trim_end_matches('.')
                .trim_matches('"')
                .to_string();
            let bare = name.rsplit('.').next().unwrap_or(&name).trim_matches('"');
            if let Some((table, why)) = self.policy.withheld(bare) {
                return Error::Refused(Refusal {
                    rule: "identifier",
                    message: format!(
                        "{bare} is {why} of {table}; identifiers and record ids never enter the joined view"
                    ),
                    hint: "people are linked for you: join tables on person and count with COUNT(DISTINCT person)".into(),
                });
            }
        }
        Error::Sql(msg)
    }

    /// Runs a query for `analyst`: checked, released under the rules, charged to the
    /// analyst's budget in DP mode, and written to the audit log.
    pub async fn query(&self, sql: &str, analyst: &str) -> Result<Answer> {
        let approved = match self.approve(sql).await {
            Ok(a) => a,
            Err(e) => {
                if let Error::Refused(r) = &e {
                    self.audit(
                        analyst,
                        "query-refused",
                        &serde_json::json!({"sql": sql, "rule": r.rule}),
                    )?;
                }
                return Err(e);
            }
        };
        let dp = approved.privacy.mode == ReleaseMode::Dp && approved.releases_people_data();
        let hash = self.query_hash(&approved);
        let limit = approved.privacy.budget;
        if dp {
            let cached = self
                .lock()?
                .cached_answer(&self.collab_id, analyst, &hash)?;
            if let Some(text) = cached {
                let mut answer: Answer = serde_json::from_str(&text)
                    .map_err(|e| Error::Internal(format!("cached answer: {e}")))?;
                answer.cached = true;
                answer.budget = Some(self.budget(analyst, limit)?);
                self.audit(analyst, "query", &serde_json::json!({"sql": sql, "query_hash": hash, "cached": true, "epsilon": 0.0}))?;
                return Ok(answer);
            }
        }
        let reservation = if dp {
            let eps = approved.privacy.epsilon;
            let id = self
                .lock()?
                .reserve_budget(&self.collab_id, analyst, &hash, eps, limit)?;
            match id {
                Some(id) => Some(id),
                None => {
                    let b = self.budget(analyst, limit)?;
                    self.audit(
                        analyst,
                        "query-refused",
                        &serde_json::json!({"sql": sql, "rule": "budget-exhausted"}),
                    )?;
                    return Err(Error::BudgetExhausted {
                        analyst: analyst.to_string(),
                        needed: eps,
                        remaining: b.remaining,
                        limit,
                    });
                }
            }
        } else {
            None
        };
        let run = tokio::time::timeout(self.limits.timeout, exec::run(&self.ctx, &approved)).await;
        let outcome = match run {
            Err(_) => Err(Error::ResourceLimit(format!(
                "the query ran longer than {} s",
                self.limits.timeout.as_secs()
            ))),
            Ok(Err(Error::DataFusion(e))) if is_resource_error(&e) => {
                Err(Error::ResourceLimit(format!(
                    "the query needs more than {} MiB of memory: {}",
                    self.limits.memory_bytes >> 20,
                    e.strip_backtrace()
                )))
            }
            Ok(r) => r,
        };
        let (batches, release) = match outcome {
            Ok(x) => x,
            Err(e) => {
                if let Some(id) = reservation {
                    self.lock()?.settle_budget(id, false)?;
                }
                self.audit(
                    analyst,
                    "query-failed",
                    &serde_json::json!({"sql": sql, "query_hash": hash, "error": e.to_string()}),
                )?;
                return Err(e);
            }
        };
        let (columns, rows) = rows_of(&batches)?;
        let mut answer = Answer {
            columns,
            rows,
            release,
            budget: None,
            cached: false,
        };
        if let Some(id) = reservation {
            let mut cat = self.lock()?;
            cat.settle_budget(id, true)?;
            let text =
                serde_json::to_string(&answer).map_err(|e| Error::Internal(e.to_string()))?;
            cat.cache_answer(&self.collab_id, analyst, &hash, &text)?;
            drop(cat);
            answer.budget = Some(self.budget(analyst, limit)?);
        }
        self.audit(
            analyst,
            "query",
            &serde_json::json!({
                "sql": sql,
                "query_hash": hash,
                "mode": answer.release.mode,
                "epsilon": answer.release.epsilon,
                "rows": answer.rows.len(),
            }),
        )?;
        Ok(answer)
    }

    /// The analyst's budget now.
    pub fn budget(&self, analyst: &str, limit: f64) -> Result<Budget> {
        let spent = self.lock()?.budget_spent(&self.collab_id, analyst)?;
        Ok(Budget {
            spent,
            limit,
            remaining: (limit - spent).max(0.0),
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Catalog>> {
        self.catalog
            .lock()
            .map_err(|_| Error::Internal("catalog lock poisoned".into()))
    }

    fn audit(&self, analyst: &str, action: &str, details: &serde_json::Value) -> Result<()> {
        self.lock()?
            .audit(analyst, action, &self.collab_id, details)?;
        Ok(())
    }

    fn query_hash(&self, approved: &ApprovedPlan) -> String {
        let mut h = Sha256::new();
        h.update(self.fingerprint.as_bytes());
        h.update(format!("{:?}", approved.privacy).as_bytes());
        h.update(approved.plan().display_indent().to_string().as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn is_resource_error(e: &datafusion::error::DataFusionError) -> bool {
    let s = e.to_string();
    s.contains("Resources exhausted") || s.contains("ResourcesExhausted")
}

/// Batches as column names and JSON rows (integers as numbers, decimals and floats as
/// numbers, everything else as its display string).
pub fn rows_of(batches: &[RecordBatch]) -> Result<(Vec<String>, Vec<Vec<serde_json::Value>>)> {
    let Some(first) = batches.first() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let schema = first.schema();
    let columns = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows = Vec::new();
    for b in batches {
        let mut cols: Vec<Box<dyn Fn(usize) -> Result<serde_json::Value>>> = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            let a = b.column(i).clone();
            let dt = f.data_type();
            if dt.is_integer() {
                let v = cast(&a, &DataType::Int64)?;
                cols.push(Box::new(move |r| {
                    let arr = v
                        .as_any()
                        .downcast_ref::<datafusion::arrow::array::Int64Array>()
                        .ok_or_else(|| Error::Internal("int column".into()))?;
                    Ok(if arr.is_null(r) {
                        serde_json::Value::Null
                    } else {
                        arr.value(r).into()
                    })
                }));
            } else if dt.is_floating() || matches!(dt, DataType::Decimal128(..)) {
                let v = cast(&a, &DataType::Float64)?;
                cols.push(Box::new(move |r| {
                    let arr = v
                        .as_any()
                        .downcast_ref::<datafusion::arrow::array::Float64Array>()
                        .ok_or_else(|| Error::Internal("float column".into()))?;
                    Ok(if arr.is_null(r) {
                        serde_json::Value::Null
                    } else {
                        serde_json::Number::from_f64(arr.value(r))
                            .map_or(serde_json::Value::Null, serde_json::Value::Number)
                    })
                }));
            } else {
                let owned = a.clone();
                cols.push(Box::new(move |r| {
                    if owned.is_null(r) {
                        return Ok(serde_json::Value::Null);
                    }
                    let f = ArrayFormatter::try_new(owned.as_ref(), &FormatOptions::default())?;
                    Ok(f.value(r).to_string().into())
                }));
            }
        }
        for r in 0..b.num_rows() {
            rows.push(cols.iter().map(|c| c(r)).collect::<Result<Vec<_>>>()?);
        }
    }
    Ok((columns, rows))
}
