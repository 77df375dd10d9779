//! Ready analyses: named, parameterised queries. Each is plain SQL that goes through
//! the same check and release as any analyst's query, so a template can never release
//! more than the rules allow.

use crate::policy::{ColumnRule, PERSON, Policy, Role};
use crate::{Answer, Engine, Error, Result};

/// A ready analysis and its parameters, as the command line or a member asking the
/// host gives them.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Insight {
    /// One of [`TEMPLATES`].
    pub template: String,
    /// profile: the dimension, as `party.table.column`.
    #[serde(default)]
    pub dimension: Option<String>,
    /// profile: only people also known to this party.
    #[serde(default)]
    pub of: Option<String>,
    /// cross-purchase: the table (default `retail.orders`).
    #[serde(default)]
    pub table: Option<String>,
    /// cross-purchase: the column (default `category`).
    #[serde(default)]
    pub column: Option<String>,
    /// funnel: the brand (default `Aurora`, the synthetic world's).
    #[serde(default)]
    pub brand: Option<String>,
}

/// One released part of an analysis.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Released {
    /// What this part shows.
    pub title: String,
    /// The SQL run.
    pub sql: String,
    /// The released answer.
    pub answer: Answer,
}

/// Runs a ready analysis for `analyst`: every step checked and released like any query.
pub async fn insight(engine: &mut Engine, i: &Insight, analyst: &str) -> Result<Vec<Released>> {
    let steps = match i.template.as_str() {
        "funnel" => funnel(engine, i.brand.as_deref().unwrap_or("Aurora")).await?,
        "overlap" => overlap(engine.policy()),
        "profile" => {
            let dim = i
                .dimension
                .as_deref()
                .ok_or_else(|| unknown("profile needs --dimension party.table.column".into()))?;
            vec![profile(engine.policy(), dim, i.of.as_deref())?]
        }
        "cross-purchase" => vec![cross_purchase(
            i.table.as_deref().unwrap_or("retail.orders"),
            i.column.as_deref().unwrap_or("category"),
        )],
        other => {
            return Err(unknown(format!(
                "unknown template {other:?}; the templates are: {}",
                TEMPLATES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    Ok(run(engine, &steps, analyst)
        .await?
        .into_iter()
        .map(|(s, answer)| Released {
            title: s.title,
            sql: s.sql,
            answer,
        })
        .collect())
}

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
        "funnel",
        "the brand's 4A funnel per month (aware: exposed to its ads on social; appeal: clicked; act: bought it at the retailer; advocate: bought it again) and the flows between stages from one month to the next (`--brand`, default the spec's brand Aurora)",
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

fn rule(role: Role) -> ColumnRule {
    ColumnRule {
        role,
        bounds: None,
        aggregates: Vec::new(),
    }
}

/// The 4A funnel of `brand`. Jingteng's own code derives, per person and month, the
/// highest stage reached (1 aware: exposed to the brand's campaigns on social; 2 appeal:
/// clicked one; 3 act: bought the brand at the retailer; 4 advocate: bought it and had
/// bought it before), and per person the stage one month later (0 when none); both are
/// registered as derived tables (`insight.funnel`, `insight.funnel_flow`) whose
/// aggregates the returned steps release under the same check as any query.
pub async fn funnel(engine: &mut Engine, brand: &str) -> Result<Vec<Step>> {
    if brand.is_empty()
        || !brand
            .chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || c == '_' || c == '-')
    {
        return Err(unknown(format!(
            "--brand {brand:?}: letters, digits, spaces, - and _ only"
        )));
    }
    let stages = format!(
        "WITH ex AS ( \
           SELECT e.person AS person, date_trunc('month', e.ts) AS month, \
                  MAX(CASE WHEN e.kind = 'click' THEN 2 ELSE 1 END) AS stage \
           FROM social.exposures e JOIN social.campaigns c ON e.campaign_id = c.campaign_id \
           WHERE c.brand = '{brand}' GROUP BY e.person, date_trunc('month', e.ts)), \
         ord AS ( \
           SELECT person, date_trunc('month', ts) AS month, COUNT(*) AS n \
           FROM retail.orders WHERE brand = '{brand}' GROUP BY person, date_trunc('month', ts)), \
         buy AS ( \
           SELECT person, month, \
                  CASE WHEN SUM(n) OVER (PARTITION BY person ORDER BY month) > 1 THEN 4 ELSE 3 END AS stage \
           FROM ord), \
         stages AS (SELECT person, month, stage FROM ex UNION ALL SELECT person, month, stage FROM buy) \
         SELECT person, month, CAST(MAX(stage) AS BIGINT) AS stage FROM stages GROUP BY person, month"
    );
    let plan = engine.session().sql(&stages).await?.into_unoptimized_plan();
    let sources = ["social.exposures", "social.campaigns", "retail.orders"];
    engine
        .register_derived(
            "insight.funnel",
            plan,
            vec![
                (PERSON.to_string(), rule(Role::Person)),
                ("month".to_string(), rule(Role::Timestamp)),
                ("stage".to_string(), rule(Role::Dimension)),
            ],
            false,
            &sources,
        )
        .await?;
    let flows = "SELECT a.person AS person, a.month AS from_month, a.stage AS from_stage, \
                 COALESCE(b.stage, 0) AS to_stage \
                 FROM insight.funnel a LEFT JOIN insight.funnel b \
                 ON a.person = b.person AND b.month = a.month + INTERVAL '1 month' \
                 WHERE a.month < (SELECT MAX(month) FROM insight.funnel)";
    let plan = engine.session().sql(flows).await?.into_unoptimized_plan();
    engine
        .register_derived(
            "insight.funnel_flow",
            plan,
            vec![
                (PERSON.to_string(), rule(Role::Person)),
                ("from_month".to_string(), rule(Role::Timestamp)),
                ("from_stage".to_string(), rule(Role::Dimension)),
                ("to_stage".to_string(), rule(Role::Dimension)),
            ],
            false,
            &sources,
        )
        .await?;
    let name = |col: &str| {
        format!(
            "CASE {col} WHEN 0 THEN 'none' WHEN 1 THEN 'aware' WHEN 2 THEN 'appeal' WHEN 3 THEN 'act' ELSE 'advocate' END"
        )
    };
    Ok(vec![
        Step {
            title: format!("{brand}: people at each 4A stage, by month"),
            sql: format!(
                "SELECT month, {} AS stage, COUNT(DISTINCT person) AS people \
                 FROM insight.funnel GROUP BY month, stage ORDER BY month, stage",
                name("stage")
            ),
        },
        Step {
            title: format!("{brand}: flows between stages from one month to the next"),
            sql: format!(
                "SELECT from_month AS month, {} AS from_stage, {} AS to_stage, \
                 COUNT(DISTINCT person) AS people FROM insight.funnel_flow \
                 GROUP BY from_month, from_stage, to_stage ORDER BY month, from_stage, to_stage",
                name("from_stage"),
                name("to_stage")
            ),
        },
    ])
}
