//! The privacy check on DataFusion's logical plan.
//!
//! A query is planned by DataFusion from SQL, then walked bottom-up here. Every column
//! of every node carries its *lineage*: whether it is the pseudonymous person id, a
//! dimension, a value computed from a measure, a per-person aggregate, or a released
//! aggregate. A query is approved only if everything that reaches the output has
//! passed through exactly one *release aggregate* (an aggregate not grouped by person)
//! made of allowed aggregates; the release is then enforced at run time (rows under
//! `k` people suppressed, or differential privacy). Anything else is refused with the
//! rule it breaks, the column or expression, and a hint.
//!
//! While walking, the person id is carried through every projection (as
//! `__jt_person`) so the release aggregate can always count people, however the
//! query was written.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{Aggregate, Expr, JoinType, LogicalPlan, Operator, Projection};
use jingteng_psi::{Privacy, ReleaseMode};
use serde::Serialize;

use crate::policy::{Policy, Role};

/// Name given to the person id where the checker carries it through a projection.
pub const CARRIED_PERSON: &str = "__jt_person";

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The rule broken (stable identifiers, listed in docs/privacy.md).
    pub rule: &'static str,
    /// What in the query broke it.
    pub message: String,
    /// How to ask instead.
    pub hint: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refused [{}]: {}", self.rule, self.message)?;
        if !self.hint.is_empty() {
            write!(f, "\nhint: {}", self.hint)?;
        }
        Ok(())
    }
}

fn refuse<T>(rule: &'static str, message: impl Into<String>, hint: impl Into<String>) -> Result<T> {
    Err(CheckError::Refused(Refusal {
        rule,
        message: message.into(),
        hint: hint.into(),
    }))
}

/// What can go wrong while checking.
#[derive(Debug)]
pub enum CheckError {
    /// The query breaks a rule.
    Refused(Refusal),
    /// DataFusion could not rebuild a node (a bug or an unsupported construct).
    Plan(datafusion::error::DataFusionError),
}

impl From<datafusion::error::DataFusionError> for CheckError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Self::Plan(e)
    }
}

type Result<T, E = CheckError> = std::result::Result<T, E>;

/// How one released aggregate is computed under differential privacy.
#[derive(Debug, Clone, PartialEq)]
pub enum DpStat {
    /// `COUNT(DISTINCT person)`: people in the group.
    People,
    /// `COUNT(*)` or `COUNT(x)` (the expression counted; `None` for every row).
    Count(Option<Expr>),
    /// `SUM(measure)` with the measure's bounds.
    Sum(Expr, (i64, i64)),
    /// `AVG(measure)`: noisy sum over noisy count.
    Avg(Expr, (i64, i64)),
}

/// The release aggregate of an approved query.
#[derive(Debug, Clone)]
pub struct Release {
    /// The aggregate node, as it stands in [`ApprovedPlan::plan`].
    pub aggregate: Aggregate,
    /// The person id in the aggregate's input.
    pub person: Column,
    /// Under DP: how each aggregate expression is computed (same order).
    pub dp: Vec<DpStat>,
    /// A join multiplied some person's rows before the aggregate.
    pub fanout: bool,
}

/// A query that passed the check: the only thing the executor runs.
#[derive(Debug, Clone)]
pub struct ApprovedPlan {
    /// The plan, with the person id carried to the release aggregate.
    pub(crate) plan: LogicalPlan,
    /// The release aggregate, absent when the query reads no data about people.
    pub(crate) release: Option<Release>,
    /// The settings that apply (the most restrictive of the tables read).
    pub privacy: Privacy,
    /// The tables read, as `party.table`.
    pub tables: BTreeSet<String>,
}

impl ApprovedPlan {
    /// The plan as it will run (for `EXPLAIN`-like display and cache keys).
    pub fn plan(&self) -> &LogicalPlan {
        &self.plan
    }

    /// Whether the answer is about people (and so released under the rules).
    pub fn releases_people_data(&self) -> bool {
        self.release.is_some()
    }
}

/// Checks a planned query against the policy.
pub fn check(policy: &Policy, plan: &LogicalPlan) -> Result<ApprovedPlan> {
    let mut c = Checker {
        policy,
        release: None,
    };
    let (plan, rel) = c.walk(plan)?;
    if rel.people && !rel.released {
        return refuse(
            "row-level-output",
            "the query returns rows about individual people; only aggregates may leave the room",
            "aggregate with GROUP BY and COUNT(*), COUNT(DISTINCT person), SUM or AVG",
        );
    }
    let privacy = policy.combined(rel.tables.iter().map(String::as_str));
    let mut release = c.release;
    if let Some(r) = &mut release {
        if privacy.mode == ReleaseMode::Dp {
            // Contributions are bounded per person after the join, so a multiplied
            // row cannot weigh more than the bounds allow.
            r.dp = dp_stats(policy, &r.aggregate)?;
        } else if r.fanout && !only_counts_people(&r.aggregate) {
            return refuse(
                "join-fanout",
                "the join matches many rows of one side with many rows of the other for the same person, multiplying that person's rows in the aggregate",
                "aggregate one side per person first — (SELECT person, COUNT(*) AS n FROM … GROUP BY person) — or count people with COUNT(DISTINCT person)",
            );
        }
    }
    Ok(ApprovedPlan {
        plan,
        release,
        privacy,
        tables: rel.tables,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// A literal: no data at all.
    Const,
    /// From dimensions and timestamps (or data not about people).
    Dimension,
    /// Computed from a measure's values.
    Measure,
    /// An aggregate computed per person: still about one person.
    PerPerson,
    /// The output of the release aggregate.
    Released,
    /// The person id itself.
    Person,
}

/// Lineage of one column.
#[derive(Debug, Clone)]
struct Lin {
    kind: Kind,
    /// Measures it is computed from, as (`party.table`, column).
    measures: BTreeSet<(String, String)>,
}

impl Lin {
    fn of(kind: Kind) -> Self {
        Self {
            kind,
            measures: BTreeSet::new(),
        }
    }
}

/// What a checked node produces.
#[derive(Debug, Clone)]
struct Rel {
    cols: Vec<Lin>,
    /// Rows are about people.
    people: bool,
    /// At most one row per person.
    one_per_person: bool,
    /// Rows are released aggregates.
    released: bool,
    /// A join upstream multiplied some person's rows.
    fanout: bool,
    tables: BTreeSet<String>,
}

impl Rel {
    fn person_index(&self) -> Option<usize> {
        self.cols.iter().position(|l| l.kind == Kind::Person)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Output,
    Filter,
    JoinOn,
    GroupBy,
    AggArg,
}

struct Checker<'a> {
    policy: &'a Policy,
    release: Option<Release>,
}

fn display(e: &Expr) -> String {
    let s = e.human_display().to_string();
    if s.is_empty() { e.to_string() } else { s }
}

impl Checker<'_> {
    /// Lineage of an expression over `schema` whose columns have lineage `rel`.
    fn expr(&self, e: &Expr, schema: &DFSchema, rel: &Rel, place: Place) -> Result<Lin> {
        let inner = e.clone().unalias_nested().data;
        if let Expr::Column(c) = &inner {
            let i = schema.index_of_column(c)?;
            let lin = rel.cols[i].clone();
            if lin.kind == Kind::Person && place == Place::Filter {
                return refuse(
                    "join-key",
                    format!("the filter uses the person id ({c})"),
                    "the pseudonymous person id may only be used to join tables, in COUNT(DISTINCT person) and in the GROUP BY of a per-person subquery",
                );
            }
            return Ok(lin);
        }
        let mut bad: Option<CheckError> = None;
        let mut cols: Vec<Column> = Vec::new();
        inner.apply(|n| {
            let stop = |bad: &mut Option<CheckError>, r: Result<()>| {
                if let Err(e) = r {
                    *bad = Some(e);
                }
                Ok(TreeNodeRecursion::Stop)
            };
            match n {
                Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_) => stop(
                    &mut bad,
                    refuse(
                        "subquery",
                        format!("{} contains a subquery", display(e)),
                        "subqueries in expressions can isolate single people; use a join on person or a GROUP BY",
                    ),
                ),
                Expr::WindowFunction(_) => stop(
                    &mut bad,
                    refuse(
                        "window",
                        format!("{} is a window function", display(n)),
                        "window functions compute per row; aggregate with GROUP BY instead",
                    ),
                ),
                Expr::OuterReferenceColumn(..) => stop(
                    &mut bad,
                    refuse(
                        "subquery",
                        format!("{} refers to an outer query", display(n)),
                        "use a join on person instead of a correlated subquery",
                    ),
                ),
                Expr::AggregateFunction(_) => stop(
                    &mut bad,
                    refuse(
                        "aggregate-not-allowed",
                        format!("{} is an aggregate inside an expression", display(n)),
                        "aggregate at the top of a SELECT item",
                    ),
                ),
                Expr::Column(c) => {
                    cols.push(c.clone());
                    Ok(TreeNodeRecursion::Continue)
                }
                _ => Ok(TreeNodeRecursion::Continue),
            }
        })?;
        if let Some(b) = bad {
            return Err(b);
        }
        let mut out = Lin::of(Kind::Const);
        for c in cols {
            let i = schema.index_of_column(&c)?;
            let lin = &rel.cols[i];
            if lin.kind == Kind::Person {
                return refuse(
                    "join-key",
                    format!("{} computes with the person id", display(e)),
                    "the pseudonymous person id may only be used as it is: to join tables, in COUNT(DISTINCT person) and in the GROUP BY of a per-person subquery",
                );
            }
            out.kind = out.kind.max(lin.kind);
            out.measures.extend(lin.measures.iter().cloned());
        }
        Ok(out)
    }

    fn walk(&mut self, plan: &LogicalPlan) -> Result<(LogicalPlan, Rel)> {
        match plan {
            LogicalPlan::TableScan(scan) => self.scan(plan, scan),
            LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => Ok((
                plan.clone(),
                Rel {
                    cols: vec![Lin::of(Kind::Const); plan.schema().fields().len()],
                    people: false,
                    one_per_person: true,
                    fanout: false,
                    released: false,
                    tables: BTreeSet::new(),
                },
            )),
            LogicalPlan::SubqueryAlias(_) => {
                let input = plan.inputs()[0];
                let (new_input, rel) = self.walk(input)?;
                Ok((rebuild(plan, vec![new_input])?, rel))
            }
            LogicalPlan::Projection(p) => {
                let (input, rel) = self.walk(&p.input)?;
                let schema = input.schema().clone();
                let mut cols = Vec::new();
                for e in &p.expr {
                    cols.push(self.expr(e, &schema, &rel, Place::Output)?);
                }
                let mut exprs = p.expr.clone();
                if let Some(i) = rel.person_index()
                    && !cols.iter().any(|l| l.kind == Kind::Person)
                {
                    let (q, f) = schema.qualified_field(i);
                    exprs.push(Expr::Column(Column::from((q, f))).alias(CARRIED_PERSON));
                    cols.push(Lin::of(Kind::Person));
                }
                let new = LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(input))?);
                Ok((new, Rel { cols, ..rel }))
            }
            LogicalPlan::Filter(f) => {
                if let LogicalPlan::Join(j) = f.input.as_ref()
                    && j.on.is_empty()
                {
                    // `FROM a, b WHERE a.person = b.person`: the equalities are the join.
                    let (join, rel) = self.join(&f.input, j, Some(&f.predicate))?;
                    let schema = join.schema().clone();
                    for conj in split_conjunction(&f.predicate) {
                        if equality_across(conj, j).is_none() {
                            self.expr(conj, &schema, &rel, Place::Filter)?;
                        }
                    }
                    return Ok((rebuild(plan, vec![join])?, rel));
                }
                let (input, rel) = self.walk(&f.input)?;
                if rel.released {
                    return refuse(
                        "having",
                        format!(
                            "the condition {} filters aggregated results",
                            display(&f.predicate)
                        ),
                        "conditions on aggregates (HAVING) can single out small groups; the engine suppresses small groups itself — filter rows with WHERE before aggregating",
                    );
                }
                self.expr(&f.predicate, input.schema(), &rel, Place::Filter)?;
                Ok((rebuild(plan, vec![input])?, rel))
            }
            LogicalPlan::Join(j) => {
                let (new, rel) = self.join(plan, j, None)?;
                Ok((new, rel))
            }
            LogicalPlan::Aggregate(a) => self.aggregate(a),
            LogicalPlan::Sort(s) => {
                let (input, rel) = self.walk(&s.input)?;
                if rel.people && !rel.released && s.fetch.is_some() {
                    return refuse(
                        "row-level-limit",
                        "ORDER BY … LIMIT over rows about people picks out individuals",
                        "aggregate first; ORDER BY and LIMIT may sort and cut the aggregated result",
                    );
                }
                Ok((rebuild(plan, vec![input])?, rel))
            }
            LogicalPlan::Limit(_) => {
                let (input, rel) = self.walk(plan.inputs()[0])?;
                if rel.people && !rel.released {
                    return refuse(
                        "row-level-limit",
                        "LIMIT or OFFSET over rows about people picks out individuals",
                        "aggregate first; LIMIT may cut the aggregated result",
                    );
                }
                Ok((rebuild(plan, vec![input])?, rel))
            }
            LogicalPlan::Distinct(_) => {
                let (input, rel) = self.walk(plan.inputs()[0])?;
                if rel.people && !rel.released {
                    return refuse(
                        "row-level-output",
                        "SELECT DISTINCT over rows about people lists individual values",
                        "use GROUP BY with COUNT(DISTINCT person): groups under the threshold are suppressed",
                    );
                }
                Ok((rebuild(plan, vec![input])?, rel))
            }
            LogicalPlan::Union(_) => refuse(
                "union",
                "UNION combines rows before the rules can see them",
                "run the parts as separate queries",
            ),
            LogicalPlan::Window(_) => refuse(
                "window",
                "window functions compute a value for every row",
                "aggregate with GROUP BY instead",
            ),
            LogicalPlan::Subquery(_) => refuse(
                "subquery",
                "the query contains a subquery expression",
                "use a join on person or a GROUP BY",
            ),
            LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Ddl(_)
            | LogicalPlan::Copy(_) => refuse(
                "statement",
                "only SELECT queries may run in the room",
                "ask with SELECT … GROUP BY …",
            ),
            other => refuse(
                "unsupported",
                format!(
                    "the plan step {} is not supported by the privacy check",
                    other.display()
                ),
                "rewrite the query with SELECT, JOIN, WHERE and GROUP BY",
            ),
        }
    }

    fn scan(
        &mut self,
        plan: &LogicalPlan,
        scan: &datafusion::logical_expr::TableScan,
    ) -> Result<(LogicalPlan, Rel)> {
        let name = match (scan.table_name.schema(), scan.table_name.table()) {
            (Some(s), t) => format!("{s}.{t}"),
            (None, t) => t.to_string(),
        };
        let Some(rule) = self.policy.tables.get(&name) else {
            return refuse(
                "unknown-table",
                format!("{name} is not a table of this collaboration"),
                "address tables as party.table, e.g. retail.orders",
            );
        };
        let mut cols = Vec::new();
        for f in scan.projected_schema.fields() {
            let Some(c) = rule.columns.get(f.name()) else {
                return refuse(
                    "unknown-column",
                    format!("{name}.{} has no rule", f.name()),
                    "",
                );
            };
            let kind = match c.role {
                Role::Person => Kind::Person,
                Role::Dimension | Role::Timestamp => Kind::Dimension,
                Role::Measure => Kind::Measure,
            };
            let mut lin = Lin::of(kind);
            if kind == Kind::Measure {
                lin.measures.insert((name.clone(), f.name().clone()));
            }
            cols.push(lin);
        }
        Ok((
            plan.clone(),
            Rel {
                cols,
                people: rule.about_people,
                one_per_person: rule.one_row_per_person,
                fanout: false,
                released: false,
                tables: BTreeSet::from([name]),
            },
        ))
    }

    fn join(
        &mut self,
        plan: &LogicalPlan,
        j: &datafusion::logical_expr::Join,
        filter_above: Option<&Expr>,
    ) -> Result<(LogicalPlan, Rel)> {
        let (left, lrel) = self.walk(&j.left)?;
        let (right, rrel) = self.walk(&j.right)?;
        if lrel.released || rrel.released {
            return refuse(
                "join-after-aggregate",
                "the query joins aggregated results",
                "ask each aggregate as its own query",
            );
        }
        // The SQL planner keeps `ON` conditions in the join's filter (the optimizer
        // extracts the equalities later), so equalities across the two sides are taken
        // from `on`, the filter, and a WHERE right above a cross join.
        let mut pairs: Vec<(Expr, Expr)> = j.on.clone();
        let mut rest: Vec<&Expr> = Vec::new();
        for pred in j.filter.iter().chain(filter_above) {
            for conj in split_conjunction(pred) {
                match equality_across(conj, j) {
                    Some(p) => pairs.push(p),
                    None if j.filter.as_ref() == Some(pred) => rest.push(conj),
                    None => {}
                }
            }
        }
        let (ls, rs) = (left.schema().clone(), right.schema().clone());
        let mut person_join = false;
        for (l, r) in &pairs {
            let ll = self.expr(l, &ls, &lrel, Place::JoinOn)?;
            let rl = self.expr(r, &rs, &rrel, Place::JoinOn)?;
            match (ll.kind == Kind::Person, rl.kind == Kind::Person) {
                (true, true) => person_join = true,
                (false, false) => {}
                _ => {
                    return refuse(
                        "join-key",
                        format!(
                            "{} = {} compares the person id with another value",
                            display(l),
                            display(r)
                        ),
                        "join tables about people on person = person",
                    );
                }
            }
        }
        if pairs.is_empty() && (lrel.people || rrel.people) {
            return refuse(
                "resource-limit",
                "a join without an equality condition (a cross join) multiplies every row of one side by every row of the other",
                "join tables about people on person = person",
            );
        }
        if lrel.people && rrel.people && !person_join {
            return refuse(
                "join-key",
                "two tables about people are joined on something other than the person id",
                "join tables about people on person = person",
            );
        }
        // Both sides may hold many rows per person: the join multiplies a person's
        // rows. Allowed only where that cannot inflate a person's weight (see `check`).
        let fanout = lrel.fanout
            || rrel.fanout
            || (person_join && !lrel.one_per_person && !rrel.one_per_person);
        if !rest.is_empty() {
            let joined = plan.schema();
            let all = Rel {
                cols: lrel.cols.iter().chain(&rrel.cols).cloned().collect(),
                ..lrel.clone()
            };
            if joined.fields().len() == all.cols.len() {
                for f in rest {
                    self.expr(f, joined, &all, Place::Filter)?;
                }
            }
        }
        let cols = match j.join_type {
            JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full => {
                lrel.cols.iter().chain(&rrel.cols).cloned().collect()
            }
            JoinType::LeftSemi | JoinType::LeftAnti => lrel.cols.clone(),
            JoinType::RightSemi | JoinType::RightAnti => rrel.cols.clone(),
            JoinType::LeftMark | JoinType::RightMark => {
                return refuse(
                    "subquery",
                    "the query uses a mark join",
                    "use a join on person",
                );
            }
        };
        let one_per_person = if lrel.people && rrel.people {
            lrel.one_per_person && rrel.one_per_person
        } else if lrel.people {
            lrel.one_per_person
        } else {
            rrel.one_per_person
        };
        let new = rebuild(plan, vec![left, right])?;
        if new.schema().fields().len() != cols.len() {
            return Err(CheckError::Plan(
                datafusion::error::DataFusionError::Internal(
                    "join schema does not match its inputs".into(),
                ),
            ));
        }
        Ok((
            new,
            Rel {
                cols,
                people: lrel.people || rrel.people,
                one_per_person,
                fanout,
                released: false,
                tables: lrel.tables.union(&rrel.tables).cloned().collect(),
            },
        ))
    }

    fn aggregate(&mut self, a: &Aggregate) -> Result<(LogicalPlan, Rel)> {
        let (input, rel) = self.walk(&a.input)?;
        if rel.released {
            return refuse(
                "aggregate-of-aggregate",
                "the query aggregates already aggregated results",
                "ask one aggregation per query",
            );
        }
        if a.group_expr
            .iter()
            .any(|g| matches!(g, Expr::GroupingSet(_)))
        {
            return refuse(
                "unsupported",
                "GROUPING SETS, ROLLUP and CUBE are not supported",
                "ask each grouping as its own query",
            );
        }
        let schema = input.schema().clone();
        let mut glins = Vec::new();
        for g in &a.group_expr {
            glins.push(self.expr(g, &schema, &rel, Place::GroupBy)?);
        }
        let new_agg = Aggregate::try_new(
            Arc::new(input.clone()),
            a.group_expr.clone(),
            a.aggr_expr.clone(),
        )?;
        let new = LogicalPlan::Aggregate(new_agg.clone());
        if !rel.people {
            let n = new.schema().fields().len();
            return Ok((
                new,
                Rel {
                    cols: vec![Lin::of(Kind::Dimension); n],
                    ..rel
                },
            ));
        }
        let per_person = glins.iter().any(|l| l.kind == Kind::Person);
        let mut cols: Vec<Lin> = Vec::new();
        if per_person {
            for e in &a.aggr_expr {
                let af = agg_fn(e)?;
                for arg in &af.params.args {
                    let l = self.expr(arg, &schema, &rel, Place::AggArg)?;
                    if l.kind == Kind::Person && af.func.name() != "count" {
                        return refuse(
                            "join-key",
                            format!("{} aggregates the person id", display(e)),
                            "the person id may only be counted",
                        );
                    }
                }
                if let Some(f) = &af.params.filter {
                    self.expr(f, &schema, &rel, Place::Filter)?;
                }
            }
            cols.extend(glins.iter().cloned());
            cols.extend(a.aggr_expr.iter().map(|_| Lin::of(Kind::PerPerson)));
            let one = glins.len() == 1;
            return Ok((
                new,
                Rel {
                    cols,
                    one_per_person: one,
                    ..rel
                },
            ));
        }
        // The release aggregate.
        let Some(pi) = rel.person_index() else {
            return refuse(
                "row-level-output",
                "the aggregate's input no longer identifies whose rows they are",
                "keep the person column in subqueries that feed an aggregate",
            );
        };
        for e in &a.aggr_expr {
            self.release_agg(e, &schema, &rel)?;
        }
        let (q, f) = schema.qualified_field(pi);
        self.release = Some(Release {
            aggregate: new_agg,
            person: Column::from((q, f)),
            dp: Vec::new(),
            fanout: rel.fanout,
        });
        cols.extend(glins.iter().map(|_| Lin::of(Kind::Released)));
        cols.extend(a.aggr_expr.iter().map(|_| Lin::of(Kind::Released)));
        Ok((
            new,
            Rel {
                cols,
                people: true,
                one_per_person: false,
                fanout: rel.fanout,
                released: true,
                tables: rel.tables,
            },
        ))
    }

    /// Checks one aggregate of the release.
    fn release_agg(&self, e: &Expr, schema: &DFSchema, rel: &Rel) -> Result<()> {
        let af = agg_fn(e)?;
        let name = af.func.name().to_ascii_lowercase();
        if let Some(f) = &af.params.filter {
            self.expr(f, schema, rel, Place::Filter)?;
        }
        let arg = af.params.args.first();
        let lin = match arg {
            Some(a) => self.expr(a, schema, rel, Place::AggArg)?,
            None => Lin::of(Kind::Const),
        };
        match name.as_str() {
            "count" => {
                if af.params.distinct && lin.kind != Kind::Person {
                    return refuse(
                        "aggregate-not-allowed",
                        format!("{} counts distinct values other than people", display(e)),
                        "COUNT(DISTINCT person) counts people; group by the column to count its values",
                    );
                }
                Ok(())
            }
            "sum" | "avg" | "min" | "max" => {
                if lin.kind == Kind::Person {
                    return refuse(
                        "join-key",
                        format!("{} aggregates the person id", display(e)),
                        "the person id may only be counted",
                    );
                }
                if af.params.distinct {
                    return refuse(
                        "aggregate-not-allowed",
                        format!("{} aggregates distinct values", display(e)),
                        "drop DISTINCT",
                    );
                }
                let extreme = name == "min" || name == "max";
                if extreme && (lin.kind != Kind::Measure || lin.measures.is_empty()) {
                    return refuse(
                        "aggregate-not-allowed",
                        format!(
                            "{} returns one row's value, which can be one person's",
                            display(e)
                        ),
                        "MIN and MAX are only allowed on measures whose owner allows them; use AVG or a bucketed COUNT",
                    );
                }
                for (table, col) in &lin.measures {
                    let allowed = self
                        .policy
                        .tables
                        .get(table)
                        .and_then(|t| t.columns.get(col))
                        .is_some_and(|c| c.aggregates.contains(&name));
                    if !allowed {
                        let hint = if extreme {
                            "MIN and MAX return one row's value, which can be one person's; use AVG or a bucketed COUNT".to_string()
                        } else {
                            format!("{table}.{col} allows only its owner's listed aggregates")
                        };
                        return refuse(
                            "aggregate-not-allowed",
                            format!(
                                "{} is not an allowed aggregate of {table}.{col}",
                                name.to_uppercase()
                            ),
                            hint,
                        );
                    }
                }
                Ok(())
            }
            other => refuse(
                "aggregate-not-allowed",
                format!("{} uses the aggregate {other}", display(e)),
                "allowed: COUNT(*), COUNT(DISTINCT person), SUM, AVG (MIN/MAX where the owner allows)",
            ),
        }
    }
}

/// Whether every aggregate is `COUNT(DISTINCT …)` (of the person id, as the check
/// allows no other), which repeated rows cannot inflate.
fn only_counts_people(a: &Aggregate) -> bool {
    a.aggr_expr.iter().all(|e| {
        matches!(e.clone().unalias_nested().data, Expr::AggregateFunction(af)
            if af.func.name().eq_ignore_ascii_case("count") && af.params.distinct)
    })
}

fn agg_fn(e: &Expr) -> Result<AggregateFunction> {
    match e.clone().unalias_nested().data {
        Expr::AggregateFunction(af) => Ok(af),
        other => refuse(
            "aggregate-not-allowed",
            format!("{} is not a plain aggregate", display(&other)),
            "use COUNT, SUM or AVG directly in the SELECT list",
        ),
    }
}

/// `l = r` with `l` from the join's left side and `r` from its right (either order).
fn equality_across(e: &Expr, j: &datafusion::logical_expr::Join) -> Option<(Expr, Expr)> {
    let Expr::BinaryExpr(b) = e else { return None };
    if b.op != Operator::Eq {
        return None;
    }
    let (Expr::Column(a), Expr::Column(c)) = (b.left.as_ref(), b.right.as_ref()) else {
        return None;
    };
    let (ls, rs) = (j.left.schema(), j.right.schema());
    if ls.has_column(a) && rs.has_column(c) {
        Some((Expr::Column(a.clone()), Expr::Column(c.clone())))
    } else if ls.has_column(c) && rs.has_column(a) {
        Some((Expr::Column(c.clone()), Expr::Column(a.clone())))
    } else {
        None
    }
}

fn rebuild(plan: &LogicalPlan, inputs: Vec<LogicalPlan>) -> Result<LogicalPlan> {
    Ok(plan.with_new_exprs(plan.expressions(), inputs)?)
}

/// Under DP: how each aggregate of the release is computed, or a refusal for those
/// that have no bounded DP form.
fn dp_stats(policy: &Policy, a: &Aggregate) -> Result<Vec<DpStat>> {
    let schema = a.input.schema();
    let bounds_of = |e: &Expr| -> Option<(i64, i64)> {
        let Expr::Column(c) = e.clone().unalias_nested().data else {
            return None;
        };
        schema.index_of_column(&c).ok()?;
        // Qualifiers may be aliases, so the column is looked up by name wherever it is
        // a measure with bounds, taking the widest (the most noise).
        policy
            .tables
            .values()
            .filter_map(|t| t.columns.get(&c.name))
            .filter(|r| r.role == Role::Measure)
            .filter_map(|r| r.bounds)
            .reduce(|x, y| (x.0.min(y.0), x.1.max(y.1)))
    };
    let mut out = Vec::new();
    for e in &a.aggr_expr {
        let af = agg_fn(e)?;
        let name = af.func.name().to_ascii_lowercase();
        let arg = af.params.args.first().cloned();
        if af.params.filter.is_some() {
            return refuse(
                "dp-unsupported",
                format!("{} has a FILTER clause", display(e)),
                "under differential privacy put the condition in WHERE or GROUP BY",
            );
        }
        let stat = match (name.as_str(), arg) {
            ("count", None) => DpStat::Count(None),
            ("count", Some(_)) if af.params.distinct => DpStat::People,
            ("count", Some(Expr::Literal(..))) => DpStat::Count(None),
            ("count", Some(x)) => DpStat::Count(Some(x)),
            ("sum" | "avg", Some(x)) => match bounds_of(&x) {
                Some(b) if name == "sum" => DpStat::Sum(x, b),
                Some(b) => DpStat::Avg(x, b),
                None => {
                    return refuse(
                        "dp-unsupported",
                        format!("{} has no declared bounds", display(&x)),
                        "under differential privacy SUM and AVG take a measure column whose owner declares bounds; count rows with COUNT(*) and a WHERE or GROUP BY instead",
                    );
                }
            },
            _ => {
                return refuse(
                    "dp-unsupported",
                    format!("{} has no differentially private form", display(e)),
                    "under differential privacy use COUNT(*), COUNT(DISTINCT person), SUM or AVG of a bounded measure",
                );
            }
        };
        out.push(stat);
    }
    Ok(out)
}
