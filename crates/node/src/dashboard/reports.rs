//! The dashboard's capability pages: insight, campaign reports and the privacy budget.
//!
//! Every figure comes out of the query engine under the collaboration's privacy rules,
//! exactly as the command line releases it:
//!
//! - **Insight** (`GET /api/insight`): the ready analyses of `jingteng insight`
//!   (overlap, profile, cross-purchase, the 4A funnel with its month-to-month flows).
//!   At the host they run on its joined view; at a member they are asked of the host
//!   over mutual TLS ([`crate::remote::insight_host`]), as `jingteng insight --collab`
//!   does.
//! - **Campaigns** (`GET /api/campaigns`): attribution (by day and by placement), lift
//!   and reach of `jingteng measure`, computed with `jingteng-measure` over the host's
//!   joined view. A member is told to ask the host (no node-to-node endpoint for them
//!   yet).
//! - **Privacy budget** (`GET /api/budget`): the ledger the host keeps, per analyst, and
//!   the contract's privacy settings.
//!
//! The budget key is the dashboard session's role within this node's party:
//! `PARTY:operator` or `PARTY:analyst` — the same `party:analyst` form the host gives a
//! member's analyst. Re-running an identical query costs nothing (the engine serves it
//! from its answer cache); on top of that the host keeps the pages' results in memory
//! per view fingerprint, so a page load does not even re-run the plans.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use jingteng_engine::policy::{Policy, Role as ColumnRole};
use jingteng_engine::templates::{self, Insight};
use jingteng_measure::{AttributionSettings, Dimension, LiftSettings, Measure, Report};
use serde_json::{Value, json};

use super::{DashState, Role, ok_json};
use crate::contract::ContractBody;
use crate::{NodeDir, remote};

/// Page results kept in memory, at most this many (the oldest go first).
const KEPT: usize = 64;

/// What the capability pages keep between requests.
#[derive(Default)]
pub(super) struct Reports {
    /// One engine run (or one round of questions to the host) at a time: two page
    /// loads at once would otherwise both miss the caches and both spend.
    running: tokio::sync::Mutex<()>,
    /// Results per (page, collaboration, view fingerprint, budget key, choices), with
    /// the order they were made in.
    kept: Mutex<(HashMap<String, Value>, Vec<String>)>,
    /// At a member: the budget the host last reported per (collaboration, budget key).
    seen: Mutex<BTreeMap<(String, String), Value>>,
}

impl Reports {
    /// A kept result, every answer in it marked as costing nothing this time.
    fn get(&self, key: &str) -> Option<Value> {
        let mut v = self.kept.lock().ok()?.0.get(key).cloned()?;
        mark_cached(&mut v);
        if let Some(m) = v.as_object_mut() {
            m.insert("kept".into(), json!(true));
        }
        Some(v)
    }

    fn put(&self, key: String, value: Value) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        let (map, order) = &mut *kept;
        if map.insert(key.clone(), value).is_none() {
            order.push(key);
        }
        while order.len() > KEPT {
            let old = order.remove(0);
            map.remove(&old);
        }
    }

    fn saw_budget(&self, collaboration: &str, analyst: &str, budget: &Value) {
        if budget.is_null() {
            return;
        }
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(
                (collaboration.to_string(), analyst.to_string()),
                budget.clone(),
            );
        }
    }
}

/// Sets every `cached` flag in `v` (an answer, a released query) to true.
fn mark_cached(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(c) = m.get_mut("cached") {
                *c = json!(true);
            }
            m.values_mut().for_each(mark_cached);
        }
        Value::Array(a) => a.iter_mut().for_each(mark_cached),
        _ => {}
    }
}

/// A failure of a page's request: (status, stable code, detail).
type Problem = (StatusCode, &'static str, String);

fn problem_response((status, code, detail): Problem) -> Response {
    crate::server::problem(status, code, &detail)
}

fn internal(e: impl std::fmt::Display) -> Problem {
    (StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

/// `?key=value&…`, percent-decoded; every value restricted to what a collaboration id,
/// a column path, a party or a brand name may hold.
fn params(query: Option<&str>) -> Result<BTreeMap<String, String>, Problem> {
    let mut out = BTreeMap::new();
    for kv in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = percent_decode(v).ok_or_else(|| bad_param(k))?;
        let ok = v.len() <= 128 && v.chars().all(|c| c.is_alphanumeric() || " ._-".contains(c));
        if !ok {
            return Err(bad_param(k));
        }
        out.insert(k.to_string(), v);
    }
    Ok(out)
}

fn bad_param(k: &str) -> Problem {
    (
        StatusCode::BAD_REQUEST,
        "bad-parameter",
        format!(
            "{k}: up to 128 letters, digits, spaces, '.', '_' or '-' (a collaboration id, party.table.column, a party or a brand)"
        ),
    )
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The collaboration a page is about: the one asked for, else the first active one.
struct Collab {
    body: ContractBody,
    spec: jingteng_psi::Collaboration,
    /// Every active collaboration of this node, for the page's picker.
    all: Vec<String>,
}

impl Collab {
    fn id(&self) -> &str {
        self.spec.id()
    }

    fn host(&self) -> &str {
        self.spec.host().unwrap_or("")
    }
}

fn collaboration(node: &NodeDir, asked: Option<&str>) -> Result<Collab, Problem> {
    let mut all = Vec::new();
    for (id, _, _) in node
        .catalog()
        .map_err(internal)?
        .collaborations()
        .map_err(internal)?
    {
        if crate::server::active_contract(node, &id).is_ok() {
            all.push(id);
        }
    }
    let id = match asked {
        Some(id) => id.to_string(),
        None => all.first().cloned().ok_or_else(|| {
            (
                StatusCode::NOT_FOUND,
                "no-collaboration",
                "this node is in no active collaboration yet (every member signs the contract first)"
                    .to_string(),
            )
        })?,
    };
    let body = crate::server::active_contract(node, &id)
        .map_err(|e| (StatusCode::NOT_FOUND, "no-collaboration", e.to_string()))?;
    let spec = jingteng_psi::Collaboration::parse(&body.spec).map_err(internal)?;
    Ok(Collab { body, spec, all })
}

/// The budget key of this session at the host, and the analyst name a member sends.
fn analyst_of(role: Role) -> &'static str {
    match role {
        Role::Operator => "operator",
        Role::Analyst => "analyst",
    }
}

/// What an engine or measurement error tells the page.
fn part_error(p: Problem) -> Value {
    json!({ "error": { "code": p.1, "detail": p.2 } })
}

fn node_problem(e: crate::Error) -> Problem {
    match e {
        crate::Error::Remote { code, detail, .. } => {
            // The host's code is one of a fixed set; anything else is passed on as "remote".
            let code = match code.as_str() {
                "refused" => "refused",
                "resource-limit" => "resource-limit",
                "budget-exhausted" => "budget-exhausted",
                "bad-query" => "bad-query",
                "bad-analyst" => "bad-analyst",
                "no-view" => "no-view",
                _ => "remote",
            };
            (StatusCode::BAD_GATEWAY, code, detail)
        }
        other => (
            StatusCode::BAD_GATEWAY,
            "host-unreachable",
            other.to_string(),
        ),
    }
}

/// Columns a profile may be drawn by: every dimension of the spec's tables about
/// people, as `party.table.column`.
fn dimensions(policy: &Policy) -> Vec<String> {
    let mut out = Vec::new();
    for t in policy.tables.values().filter(|t| t.about_people) {
        for (c, rule) in &t.columns {
            if rule.role == ColumnRole::Dimension {
                out.push(format!("{}.{c}", t.qualified()));
            }
        }
    }
    out
}

/// The profile a page shows unless told otherwise: an age band if the spec has one
/// (the first media party's), else the first dimension; among people the host also
/// knows when the dimension is another party's.
fn default_profile(dims: &[String], host: &str) -> (Option<String>, Option<String>) {
    let dim = dims
        .iter()
        .find(|d| d.ends_with(".age_band") && !d.starts_with(&format!("{host}.")))
        .or_else(|| dims.iter().find(|d| d.ends_with(".age_band")))
        .or_else(|| dims.first())
        .cloned();
    let of = dim
        .as_deref()
        .filter(|d| !d.starts_with(&format!("{host}.")) && !host.is_empty())
        .map(|_| host.to_string());
    (dim, of)
}

/// The funnel's brand unless told otherwise: the template's default.
const DEFAULT_BRAND: &str = "Aurora";

/// The funnel's brands to pick from: the campaign table's (no data about people, so
/// released exactly and free), when the spec has the table the funnel reads.
const BRANDS_SQL: &str = "SELECT DISTINCT brand FROM social.campaigns ORDER BY brand";

fn has_brands(policy: &Policy) -> bool {
    policy
        .tables
        .get("social.campaigns")
        .is_some_and(|t| !t.about_people && t.columns.contains_key("brand"))
}

fn brand_list(answer: &jingteng_engine::Answer) -> Vec<Value> {
    answer
        .rows
        .iter()
        .filter_map(|r| r.first().filter(|v| v.is_string()).cloned())
        .collect()
}

/// `GET /api/insight[?collab=ID][&dimension=party.table.column][&of=PARTY][&brand=B]`:
/// the ready analyses, released as `jingteng insight` releases them.
pub(super) async fn insight(
    State(state): State<DashState>,
    axum::Extension(role): axum::Extension<Role>,
    uri: axum::http::Uri,
) -> Response {
    match insight_json(&state, role, uri.query()).await {
        Ok(v) => ok_json(v),
        Err(p) => problem_response(p),
    }
}

async fn insight_json(
    state: &DashState,
    role: Role,
    query: Option<&str>,
) -> Result<Value, Problem> {
    let params = params(query)?;
    let node = NodeDir::open(&state.dir).map_err(internal)?;
    let collab = collaboration(&node, params.get("collab").map(String::as_str))?;
    let policy = Policy::from_collab(&collab.spec);
    let dims = dimensions(&policy);
    let parties: Vec<String> = collab
        .spec
        .parties()
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let (default_dim, default_of) = default_profile(&dims, collab.host());
    let dimension = match params.get("dimension") {
        Some(d) if dims.contains(d) => Some(d.clone()),
        Some(d) => {
            return Err((
                StatusCode::BAD_REQUEST,
                "bad-parameter",
                format!(
                    "dimension {d}: not a dimension of the spec (one of {})",
                    dims.join(", ")
                ),
            ));
        }
        None => default_dim,
    };
    let of = match params.get("of").map(String::as_str) {
        Some("") => None,
        Some(p) if parties.iter().any(|x| x == p) => Some(p.to_string()),
        Some(p) => {
            return Err((
                StatusCode::BAD_REQUEST,
                "bad-parameter",
                format!(
                    "of {p}: not a party of the collaboration ({})",
                    parties.join(", ")
                ),
            ));
        }
        None if params.contains_key("dimension") => None,
        None => default_of,
    };
    let brand = params
        .get("brand")
        .cloned()
        .unwrap_or_else(|| DEFAULT_BRAND.to_string());
    let mut asks: Vec<(&str, Insight)> = vec![(
        "overlap",
        Insight {
            template: "overlap".into(),
            ..Insight::default()
        },
    )];
    if let Some(d) = &dimension {
        asks.push((
            "profile",
            Insight {
                template: "profile".into(),
                dimension: Some(d.clone()),
                of: of.clone(),
                ..Insight::default()
            },
        ));
    }
    asks.push((
        "cross_purchase",
        Insight {
            template: "cross-purchase".into(),
            ..Insight::default()
        },
    ));
    asks.push((
        "funnel",
        Insight {
            template: "funnel".into(),
            brand: Some(brand.clone()),
            ..Insight::default()
        },
    ));

    let analyst = analyst_of(role);
    let party = node.config().party.clone();
    let key = format!("{party}:{analyst}");
    let is_host = collab.host() == party;
    let _one_at_a_time = state.reports.running.lock().await;
    let mut parts = serde_json::Map::new();
    let budget;
    let mut computed_ms = now_ms();
    if is_host {
        let view = crate::view_dir(&state.dir, collab.id());
        let fingerprint = view_fingerprint(&view)?;
        let memo = format!(
            "insight\n{}\n{fingerprint}\n{key}\n{dimension:?}\n{of:?}\n{brand}",
            collab.id()
        );
        if let Some(v) = state.reports.get(&memo) {
            return Ok(v);
        }
        let (mut engine, _, key) =
            remote::open_engine(&state.dir, &collab.body, &party, analyst).await?;
        let mut failed = false;
        for (name, ask) in &asks {
            let part = match templates::insight(&mut engine, ask, &key).await {
                Ok(steps) => json!({ "steps": steps }),
                Err(e) => {
                    failed = true;
                    part_error(remote::refusal(e))
                }
            };
            parts.insert(name.to_string(), part);
        }
        budget = serde_json::to_value(
            engine
                .budget(&key, engine.policy().budget())
                .map_err(|e| internal(remote::refusal(e).2))?,
        )
        .map_err(internal)?;
        let mut brands = Vec::new();
        if has_brands(&policy) {
            match engine.query(BRANDS_SQL, &key).await {
                Ok(a) => brands = brand_list(&a),
                Err(_) => failed = true,
            }
        }
        let mut v = insight_reply(
            &collab,
            &key,
            true,
            &dims,
            &parties,
            &dimension,
            &of,
            &brand,
            parts,
            &budget,
            &policy,
            computed_ms,
        );
        v["brands"] = json!(brands);
        if !failed {
            state.reports.put(memo, v.clone());
        }
        return Ok(v);
    }
    // A member asks the host, one analysis at a time, as `jingteng insight --collab`.
    let mut last_budget = Value::Null;
    for (name, ask) in asks {
        let req = remote::InsightRequest {
            insight: ask,
            analyst: analyst.to_string(),
        };
        let part = match remote::insight_host(&node, collab.id(), &req).await {
            Ok(steps) => {
                if let Some(b) = steps.iter().rev().find_map(|s| s.answer.budget.as_ref()) {
                    last_budget = serde_json::to_value(b).map_err(internal)?;
                }
                json!({ "steps": steps })
            }
            Err(e) => part_error(node_problem(e)),
        };
        parts.insert(name.to_string(), part);
    }
    state.reports.saw_budget(collab.id(), &key, &last_budget);
    budget = last_budget;
    let mut brands = Vec::new();
    if has_brands(&policy) {
        let req = remote::QueryRequest {
            sql: BRANDS_SQL.into(),
            analyst: analyst.to_string(),
            explain: false,
        };
        if let Ok(remote::QueryReply::Answer(a)) =
            remote::query_host(&node, collab.id(), &req).await
        {
            brands = brand_list(&a);
        }
    }
    computed_ms = now_ms().max(computed_ms);
    let mut v = insight_reply(
        &collab,
        &key,
        false,
        &dims,
        &parties,
        &dimension,
        &of,
        &brand,
        parts,
        &budget,
        &policy,
        computed_ms,
    );
    v["brands"] = json!(brands);
    Ok(v)
}

#[allow(clippy::too_many_arguments)]
fn insight_reply(
    collab: &Collab,
    key: &str,
    is_host: bool,
    dims: &[String],
    parties: &[String],
    dimension: &Option<String>,
    of: &Option<String>,
    brand: &str,
    parts: serde_json::Map<String, Value>,
    budget: &Value,
    policy: &Policy,
    computed_ms: i64,
) -> Value {
    json!({
        "collaboration": collab.id(),
        "collaborations": collab.all,
        "host": collab.host(),
        "is_host": is_host,
        "analyst": key,
        "dimensions": dims,
        "parties": parties,
        "choice": { "dimension": dimension, "of": of, "brand": brand },
        "privacy": policy.combined(policy.tables.keys().map(String::as_str)),
        "parts": parts,
        "budget": budget,
        "computed_ms": computed_ms,
    })
}

fn view_fingerprint(view: &std::path::Path) -> Result<String, Problem> {
    jingteng_engine::view::load(view)
        .map(|info| info.fingerprint)
        .map_err(|_| {
            (
                StatusCode::CONFLICT,
                "no-view",
                "no joined view yet: this node, the host, builds it with the networked match (`jingteng match --collab ID`)"
                    .to_string(),
            )
        })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `GET /api/campaigns[?collab=ID]`: attribution (by day and by placement), lift and
/// reach per campaign, as `jingteng measure` computes them, over the host's joined view.
pub(super) async fn campaigns(
    State(state): State<DashState>,
    axum::Extension(role): axum::Extension<Role>,
    uri: axum::http::Uri,
) -> Response {
    match campaigns_json(&state, role, uri.query()).await {
        Ok(v) => ok_json(v),
        Err(p) => problem_response(p),
    }
}

/// The Campaigns page's reports, with `jingteng measure`'s default settings.
fn campaign_measures() -> [Measure; 3] {
    [
        Measure::Attribution {
            settings: AttributionSettings::default(),
            campaign: None,
            by: vec![Dimension::Day, Dimension::Placement],
        },
        Measure::Lift {
            settings: LiftSettings::default(),
            campaign: None,
        },
        Measure::Reach { campaign: None },
    ]
}

async fn campaigns_json(
    state: &DashState,
    role: Role,
    query: Option<&str>,
) -> Result<Value, Problem> {
    let params = params(query)?;
    let node = NodeDir::open(&state.dir).map_err(internal)?;
    let collab = collaboration(&node, params.get("collab").map(String::as_str))?;
    let analyst = analyst_of(role);
    let party = node.config().party.clone();
    let key = format!("{party}:{analyst}");
    let policy = Policy::from_collab(&collab.spec);
    let head = json!({
        "collaboration": collab.id(),
        "collaborations": collab.all,
        "host": collab.host(),
        "analyst": key,
        "privacy": policy.combined(policy.tables.keys().map(String::as_str)),
    });
    if collab.host() != party {
        // A member asks the host for each report (as `jingteng measure --collab` does);
        // the host charges `PARTY:analyst` and serves a repeat from its cache.
        let _one_at_a_time = state.reports.running.lock().await;
        let mut failed = false;
        let mut budget = Value::Null;
        let mut parts = Vec::new();
        for measure in campaign_measures() {
            let req = crate::MeasureRequest {
                measure,
                analyst: analyst.to_string(),
            };
            let report = crate::measure_host(&node, collab.id(), &req)
                .await
                .map_err(node_problem)
                .and_then(|r| {
                    let released = match &r {
                        Report::Attribution(a) => &a.released,
                        Report::Lift(l) => &l.released,
                        Report::Reach(r) => &r.released,
                        Report::Program(p) => &p.released,
                    };
                    if let Some(b) = released.iter().rev().find_map(|q| q.budget.as_ref()) {
                        budget = json!(b);
                    }
                    serde_json::to_value(r).map_err(internal)
                });
            parts.push(report.unwrap_or_else(|p| {
                failed = true;
                part_error(p)
            }));
        }
        let [attribution, lift, reach] = <[Value; 3]>::try_from(parts)
            .map_err(|_| internal("internal error: three measurements, three parts"))?;
        let mut v = head;
        v["is_host"] = json!(false);
        v["ask_host"] = json!(false);
        v["attribution"] = attribution;
        v["lift"] = lift;
        v["reach"] = reach;
        v["budget"] = budget;
        v["computed_ms"] = json!(now_ms());
        return Ok(v);
    }
    let view = crate::view_dir(&state.dir, collab.id());
    let fingerprint = view_fingerprint(&view)?;
    let memo = format!("campaigns\n{}\n{fingerprint}\n{key}", collab.id());
    let _one_at_a_time = state.reports.running.lock().await;
    if let Some(v) = state.reports.get(&memo) {
        return Ok(v);
    }
    let (mut engine, info, key) =
        remote::open_engine(&state.dir, &collab.body, &party, analyst).await?;
    let mut failed = false;
    let mut parts = Vec::new();
    for m in campaign_measures() {
        let report = m
            .run(&mut engine, &info, &key)
            .await
            .map_err(remote::measure_problem)
            .and_then(|r| serde_json::to_value(r).map_err(internal));
        parts.push(report.unwrap_or_else(|p| {
            failed = true;
            part_error(p)
        }));
    }
    let [attribution, lift, reach] = <[Value; 3]>::try_from(parts)
        .map_err(|_| internal("internal error: three measurements, three parts"))?;
    let budget = engine
        .budget(&key, engine.policy().budget())
        .map_err(|e| internal(remote::refusal(e).2))?;
    let mut v = head;
    v["is_host"] = json!(true);
    v["ask_host"] = json!(false);
    v["attribution"] = attribution;
    v["lift"] = lift;
    v["reach"] = reach;
    v["budget"] = serde_json::to_value(budget).map_err(internal)?;
    v["computed_ms"] = json!(now_ms());
    if !failed {
        state.reports.put(memo, v.clone());
    }
    Ok(v)
}

/// `GET /api/budget[?collab=ID]`: the ledger per analyst (kept by the host), and the
/// contract's privacy settings per party.
pub(super) async fn budget(
    State(state): State<DashState>,
    axum::Extension(role): axum::Extension<Role>,
    uri: axum::http::Uri,
) -> Response {
    let params = match params(uri.query()) {
        Ok(p) => p,
        Err(p) => return problem_response(p),
    };
    let dir = state.dir.clone();
    let seen = state
        .reports
        .seen
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    let done = tokio::task::spawn_blocking(move || -> Result<Value, Problem> {
        let node = NodeDir::open(&dir).map_err(internal)?;
        let collab = collaboration(&node, params.get("collab").map(String::as_str))?;
        let policy = Policy::from_collab(&collab.spec);
        let limit = policy.budget();
        let party = node.config().party.clone();
        let is_host = collab.host() == party;
        let entries = node
            .catalog()
            .map_err(internal)?
            .budget_entries(collab.id())
            .map_err(internal)?;
        let mut analysts: BTreeMap<String, Value> = BTreeMap::new();
        for e in &entries {
            let a = analysts.entry(e.analyst.clone()).or_insert_with(|| {
                json!({"analyst": e.analyst, "charged": 0.0, "reserved": 0.0, "refunded": 0.0,
                       "queries": 0, "first_ms": e.created_ms, "last_ms": e.updated_ms, "history": []})
            });
            if let Some(x) = a[&e.state].as_f64() {
                a[&e.state] = json!(x + e.epsilon);
            }
            a["queries"] = json!(a["queries"].as_u64().unwrap_or(0) + 1);
            a["last_ms"] = json!(a["last_ms"].as_i64().unwrap_or(0).max(e.updated_ms));
            if e.state == "charged" {
                let so_far = a["charged"].as_f64().unwrap_or(0.0);
                if let Some(h) = a["history"].as_array_mut() {
                    h.push(json!([e.updated_ms, so_far]));
                }
            }
        }
        let analysts: Vec<Value> = analysts
            .into_values()
            .map(|mut a| {
                let spent = a["charged"].as_f64().unwrap_or(0.0) + a["reserved"].as_f64().unwrap_or(0.0);
                a["spent"] = json!(spent);
                a["remaining"] = json!((limit - spent).max(0.0));
                a
            })
            .collect();
        let you = format!("{party}:{}", analyst_of(role));
        let seen: Vec<Value> = seen
            .iter()
            .filter(|((c, _), _)| c == collab.id())
            .map(|((_, a), b)| json!({"analyst": a, "budget": b}))
            .collect();
        let parties: Vec<Value> = collab
            .spec
            .parties()
            .iter()
            .map(|p| json!({"party": p.name, "privacy": p.privacy}))
            .collect();
        Ok(json!({
            "collaboration": collab.id(),
            "collaborations": collab.all,
            "host": collab.host(),
            "is_host": is_host,
            "you": you,
            "limit": limit,
            "combined": policy.combined(policy.tables.keys().map(String::as_str)),
            "parties": parties,
            "analysts": analysts,
            "seen": seen,
        }))
    })
    .await;
    match done {
        Ok(Ok(v)) => ok_json(v),
        Ok(Err(p)) => problem_response(p),
        Err(_) => problem_response(internal("the request's work crashed")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use hyper::service::Service as _;
    use hyper_util::service::TowerToHyperService;

    /// Three nodes under one signed contract over a tiny synthetic world (its spec's
    /// release mode set to `mode`), and the host's joined view built as the networked
    /// match builds it. Returns (tmp, host, member).
    async fn collaboration(mode: &str) -> (tempfile::TempDir, NodeDir, NodeDir) {
        let tmp = tempfile::tempdir().unwrap();
        let world = tmp.path().join("world");
        let config = jingteng_synth::Config {
            seed: 5,
            scale: "tiny".parse().unwrap(),
            force: false,
            media: 1,
        };
        jingteng_synth::generate(&config, &world, &|_, _| {}).unwrap();
        let spec = world.join("collab-test.toml");
        let text = std::fs::read_to_string(world.join("collab.toml"))
            .unwrap()
            .replace("mode = \"dp\"", &format!("mode = \"{mode}\""));
        std::fs::write(&spec, text).unwrap();
        let node = |party: &str| {
            let dir = tmp.path().join(party);
            crate::init(&dir, party).unwrap();
            NodeDir::open(&dir).unwrap()
        };
        let (social, retail, brand) = (node("social"), node("retail"), node("brand"));
        let cards = vec![
            crate::contract::card(&social).unwrap(),
            crate::contract::card(&brand).unwrap(),
        ];
        let mut c = crate::contract::propose(&retail, &spec, cards).unwrap();
        crate::contract::sign(&social, &mut c).unwrap();
        let status = crate::contract::sign(&brand, &mut c).unwrap();
        for n in [&social, &retail, &brand] {
            crate::contract::record(n, &c, &status, "activate").unwrap();
        }
        jingteng_engine::view::build_local(
            &spec,
            &crate::view_dir(retail.dir(), "synth-5"),
            std::sync::Arc::new(|_: &str, _: u64| {}),
        )
        .await
        .unwrap();
        (tmp, retail, brand)
    }

    /// GET `uri` on a new dashboard router (nothing kept in memory from an earlier one)
    /// with the node's operator or analyst token: (status, JSON).
    async fn get(node: &NodeDir, uri: &str, role: Role) -> (StatusCode, Value) {
        let tokens = super::super::dashboard_tokens(node).unwrap();
        let token = match role {
            Role::Operator => tokens.operator(),
            Role::Analyst => tokens.analyst(),
        };
        get_with(super::super::router(node).unwrap(), uri, token.expose()).await
    }

    async fn get_with(app: axum::Router, uri: &str, token: &str) -> (StatusCode, Value) {
        let app = TowerToHyperService::new(app);
        let req = Request::builder()
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let r = app.call(req).await.unwrap();
        let status = r.status();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn answers(v: &Value) -> Vec<&Value> {
        v["parts"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|p| p["steps"].as_array().unwrap())
            .map(|s| &s["answer"])
            .collect()
    }

    #[tokio::test]
    async fn the_pages_need_a_token_and_an_active_collaboration() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("retail");
        crate::init(&dir, "retail").unwrap();
        let node = NodeDir::open(&dir).unwrap();
        for page in ["/api/insight", "/api/campaigns", "/api/budget"] {
            let (status, v) = get_with(super::super::router(&node).unwrap(), page, "an_nope").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{page}");
            assert_eq!(v["type"], "urn:jingteng:error:unauthorised", "{page}");
            let (status, v) = get(&node, page, Role::Analyst).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{page}");
            assert_eq!(v["type"], "urn:jingteng:error:no-collaboration", "{page}");
            assert!(
                v["detail"]
                    .as_str()
                    .unwrap()
                    .contains("no active collaboration"),
                "{v}"
            );
            let (status, v) = get(&node, &format!("{page}?collab=a%2Fb"), Role::Analyst).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
            assert_eq!(v["type"], "urn:jingteng:error:bad-parameter", "{page}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn insight_under_dp_spends_once_and_is_free_on_every_reload() {
        let (_tmp, host, member) = collaboration("dp").await;
        let (status, first) = get(&host, "/api/insight", Role::Operator).await;
        assert_eq!(status, StatusCode::OK, "{first}");
        assert_eq!(first["analyst"], "retail:operator");
        assert_eq!(first["is_host"], true);
        assert_eq!(first["choice"]["dimension"], "social.users.age_band");
        assert_eq!(first["choice"]["of"], "retail");
        for part in ["overlap", "profile", "cross_purchase", "funnel"] {
            assert!(
                first["parts"][part]["steps"].is_array(),
                "{part}: {}",
                first["parts"][part]
            );
        }
        // Four overlap sets, the profile, cross-purchase, the funnel and its flows.
        let released = answers(&first);
        assert_eq!(released.len(), 8);
        for a in &released {
            assert_eq!(a["release"]["mode"], "dp");
            assert_eq!(a["cached"], false);
            assert!(a["release"]["noise"][0]["scale"].as_f64().unwrap() > 0.0);
        }
        assert!(
            !first["parts"]["funnel"]["steps"][1]["answer"]["rows"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert_eq!(first["budget"]["spent"], 4.0);
        // The funnel's brands to pick from: the campaign table's, free (no people).
        let brands = first["brands"].as_array().unwrap();
        assert!(
            brands.contains(&json!("Aurora")) && brands.len() > 5,
            "{brands:?}"
        );

        // A new dashboard (nothing in memory): the engine serves every answer from its
        // cache, and nothing more is charged.
        let (_, again) = get(&host, "/api/insight", Role::Operator).await;
        let released = answers(&again);
        assert!(released.iter().all(|a| a["cached"] == true));
        assert_eq!(again["budget"]["spent"], 4.0);
        assert_eq!(
            answers(&first)
                .iter()
                .map(|a| &a["rows"])
                .collect::<Vec<_>>(),
            released.iter().map(|a| &a["rows"]).collect::<Vec<_>>(),
            "the same released figures"
        );
        // The same dashboard keeps the page: no engine run at all, and it says so.
        let app = super::super::router(&host).unwrap();
        let op = super::super::dashboard_tokens(&host)
            .unwrap()
            .operator()
            .clone();
        let _ = get_with(app.clone(), "/api/insight", op.expose()).await;
        let (_, kept) = get_with(app, "/api/insight", op.expose()).await;
        assert_eq!(kept["kept"], true);

        // A new choice is a new query; the analyst's budget is the analyst's own.
        let (_, level) = get(
            &host,
            "/api/insight?dimension=retail.users.level&of=",
            Role::Operator,
        )
        .await;
        assert_eq!(level["budget"]["spent"], 4.5);
        assert!(
            level["parts"]["profile"]["steps"][0]["title"]
                .as_str()
                .unwrap()
                .contains("retail.users.level")
        );
        let (_, analyst) = get(&host, "/api/insight", Role::Analyst).await;
        assert_eq!(analyst["analyst"], "retail:analyst");
        assert_eq!(analyst["budget"]["spent"], 4.0);

        // The campaign reports spend the analyst's budget too; once it is spent, a new
        // figure is refused with the budget shown, and the rest of the page still shows
        // (cached answers are free).
        let (status, c) = get(&host, "/api/campaigns", Role::Analyst).await;
        assert_eq!(status, StatusCode::OK, "{c}");
        for part in ["attribution", "lift", "reach"] {
            assert!(c[part]["released"].is_array(), "{part}: {}", c[part]);
        }
        let spent = c["budget"]["spent"].as_f64().unwrap();
        assert!(spent > 4.0 && spent <= 8.0, "{spent}");
        let mut refused = None;
        for dim in [
            "retail.users.region",
            "retail.users.gender",
            "retail.users.age_band",
            "social.users.gender",
            "social.users.city_tier",
            "social.users.interest",
            "brand.crm.tier",
            "retail.orders.channel",
            "retail.orders.category",
        ] {
            let (status, v) = get(
                &host,
                &format!("/api/insight?dimension={dim}&of="),
                Role::Analyst,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{v}");
            if let Some(code) = v["parts"]["profile"]["error"]["code"].as_str() {
                assert_eq!(code, "budget-exhausted", "{v}");
                let detail = v["parts"]["profile"]["error"]["detail"].as_str().unwrap();
                assert!(detail.contains("left"), "{detail}");
                assert!(
                    v["parts"]["overlap"]["steps"].is_array(),
                    "cached: still shown"
                );
                refused = Some(v["budget"]["spent"].as_f64().unwrap());
                break;
            }
        }
        let spent = refused.expect("the budget ran out");
        assert!(spent <= 10.0 && spent > 9.0, "{spent}");

        // The ledger per analyst, and the contract's settings.
        let (_, b) = get(&host, "/api/budget", Role::Analyst).await;
        assert_eq!(b["you"], "retail:analyst");
        assert_eq!(b["limit"], 10.0);
        assert_eq!(b["combined"]["mode"], "dp");
        assert_eq!(b["combined"]["epsilon"], 0.5);
        let by: BTreeMap<&str, &Value> = b["analysts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["analyst"].as_str().unwrap(), a))
            .collect();
        assert_eq!(by["retail:operator"]["charged"], 4.5);
        assert_eq!(by["retail:operator"]["remaining"], 5.5);
        assert_eq!(by["retail:operator"]["queries"], 9);
        assert_eq!(by["retail:analyst"]["charged"], spent);
        assert_eq!(by["retail:analyst"]["reserved"], 0.0);
        assert!(by["retail:analyst"]["remaining"].as_f64().unwrap() < 1.0);

        // Bad choices are refused, naming what is allowed; nothing is charged.
        for (uri, code) in [
            (
                "/api/insight?dimension=retail.orders.amount_fen",
                "bad-parameter",
            ),
            (
                "/api/insight?dimension=social.campaigns.brand",
                "bad-parameter",
            ),
            ("/api/insight?of=nobody", "bad-parameter"),
            ("/api/insight?brand=%27%20OR%201%3D1", "bad-parameter"),
            ("/api/insight?collab=other", "no-collaboration"),
            ("/api/budget?collab=other", "no-collaboration"),
        ] {
            let (status, v) = get(&host, uri, Role::Operator).await;
            assert!(status.is_client_error(), "{uri}: {status}");
            assert_eq!(v["type"], format!("urn:jingteng:error:{code}"), "{uri}");
        }
        let (_, b) = get(&host, "/api/budget", Role::Operator).await;
        assert_eq!(b["analysts"][1]["charged"], 4.5);

        // A member asks the host; with the host not serving, each part says so (no
        // panic, no page failure). Campaign reports are the host's.
        let (status, m) = get(&member, "/api/insight", Role::Operator).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(m["is_host"], false);
        assert_eq!(m["analyst"], "brand:operator");
        assert_eq!(m["parts"]["overlap"]["error"]["code"], "host-unreachable");
        let (_, c) = get(&member, "/api/campaigns", Role::Analyst).await;
        assert_eq!(c["is_host"], false);
        assert_eq!(c["host"], "retail");
        for part in ["attribution", "lift", "reach"] {
            assert_eq!(c[part]["error"]["code"], "host-unreachable", "{part}");
        }
        let (_, b) = get(&member, "/api/budget", Role::Analyst).await;
        assert_eq!(b["is_host"], false);
        assert_eq!(b["analysts"], json!([]));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn campaign_reports_in_threshold_mode_have_lift_with_intervals() {
        let (_tmp, host, _member) = collaboration("threshold").await;
        let (status, c) = get(&host, "/api/campaigns", Role::Analyst).await;
        assert_eq!(status, StatusCode::OK, "{c}");
        assert_eq!(c["analyst"], "retail:analyst");
        let attribution = &c["attribution"];
        assert_eq!(attribution["campaigns"].as_array().unwrap().len(), 30);
        assert_eq!(attribution["settings"]["model"], "last-touch");
        let dims: Vec<&str> = attribution["breakdowns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["dimension"].as_str().unwrap())
            .collect();
        assert_eq!(dims, ["day", "placement"]);
        assert!(attribution["campaigns"][0]["spend_fen"].as_i64().unwrap() > 0);
        // The holdout of a tiny world still gives some campaigns both groups.
        let with_lift: Vec<&Value> = c["lift"]["campaigns"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| !l["itt_difference"].is_null())
            .collect();
        assert!(!with_lift.is_empty(), "{}", c["lift"]);
        for l in with_lift {
            let i = &l["itt_difference"];
            let (lo, est, hi) = (
                i["low"].as_f64().unwrap(),
                i["estimate"].as_f64().unwrap(),
                i["high"].as_f64().unwrap(),
            );
            assert!(lo <= est && est <= hi, "{i}");
            assert!(l["test"]["people"].as_i64().unwrap() >= 50);
            assert!(l["control"]["people"].as_i64().unwrap() >= 50);
        }
        let reach = &c["reach"];
        assert_eq!(reach["parties"], json!(["social"]));
        assert!(reach["campaigns"][0]["deduplicated"].as_i64().unwrap() >= 50);
        // Every release is exact, with small groups suppressed; nothing charged.
        for part in ["attribution", "lift", "reach"] {
            for r in c[part]["released"].as_array().unwrap() {
                assert!(
                    ["threshold", "public"].contains(&r["release"]["mode"].as_str().unwrap()),
                    "{r}"
                );
            }
        }
        assert_eq!(c["budget"]["spent"], 0.0);
        let (_, b) = get(&host, "/api/budget", Role::Analyst).await;
        assert_eq!(b["combined"]["mode"], "threshold");
        assert_eq!(b["analysts"], json!([]));
    }

    #[test]
    fn parameters_are_decoded_and_restricted() {
        let p = params(Some(
            "collab=synth-5&dimension=social.users.age_band&brand=Blue%20Sky&of=",
        ))
        .unwrap();
        assert_eq!(p["collab"], "synth-5");
        assert_eq!(p["dimension"], "social.users.age_band");
        assert_eq!(p["brand"], "Blue Sky");
        assert_eq!(p["of"], "");
        for bad in ["brand=%27%3B", "brand=%zz", "collab=a/b", "brand=%ff"] {
            let e = params(Some(bad)).unwrap_err();
            assert_eq!(e.0, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(e.1, "bad-parameter", "{bad}");
        }
        assert!(params(Some(&format!("brand={}", "x".repeat(200)))).is_err());
        assert!(params(None).unwrap().is_empty());
    }

    #[test]
    fn the_default_profile_is_a_media_age_band_among_the_hosts_people() {
        let dims: Vec<String> = [
            "retail.users.age_band",
            "retail.users.level",
            "social.users.age_band",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            default_profile(&dims, "retail"),
            (Some("social.users.age_band".into()), Some("retail".into()))
        );
        assert_eq!(
            default_profile(&dims[..2], "retail"),
            (Some("retail.users.age_band".into()), None)
        );
        assert_eq!(default_profile(&[], "retail"), (None, None));
    }

    #[test]
    fn kept_results_are_bounded() {
        let r = Reports::default();
        for i in 0..(KEPT + 5) {
            r.put(format!("k{i}"), json!(i));
        }
        assert!(r.get("k0").is_none());
        assert_eq!(
            r.get(&format!("k{}", KEPT + 4)),
            Some(json!(KEPT + 4)),
            "only objects are marked"
        );
        r.put(
            "a".into(),
            json!({"parts": {"x": {"steps": [{"answer": {"cached": false, "rows": [[1]]}}]}}}),
        );
        let again = r.get("a").unwrap();
        assert_eq!(again["parts"]["x"]["steps"][0]["answer"]["cached"], true);
        assert_eq!(again["kept"], true);
        assert_eq!(r.kept.lock().unwrap().0.len(), KEPT);
    }
}
