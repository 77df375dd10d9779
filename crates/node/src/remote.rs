//! Queries against the host of a collaboration: a member's analyst sends SQL, a ready
//! analysis or a measurement over the node-to-node API; the host checks and answers it
//! with its query engine over the joined view of the latest match, under the
//! contract's privacy rules. The budget is per analyst, named `party:analyst` at the
//! host, so that one member cannot spend another's.

use std::path::Path;

use axum::http::StatusCode;
use jingteng_engine::templates::{self, Insight, Released};
use jingteng_engine::{Answer, Engine, Limits};
use jingteng_measure::{Measure, Report};
use serde::{Deserialize, Serialize};

use crate::contract::ContractBody;
use crate::{Error, NodeDir, Result};

/// A query a member sends the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// The SQL.
    pub sql: String,
    /// Who asks, within the calling member (the budget is per `party:analyst`).
    #[serde(default = "default_analyst")]
    pub analyst: String,
    /// Check only: answer with the plan that would run and spend nothing.
    #[serde(default)]
    pub explain: bool,
}

fn default_analyst() -> String {
    "analyst".into()
}

/// What the host answers: the released answer, or (for `explain`) the approved plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueryReply {
    /// The released answer.
    Answer(Answer),
    /// The plan that would run.
    Explain {
        /// The tables it reads.
        tables: Vec<String>,
        /// The privacy settings that apply.
        privacy: serde_json::Value,
        /// The approved plan, indented.
        plan: String,
    },
}

/// Whether an analyst name is usable (it becomes part of the budget's key).
fn valid_analyst(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// A ready analysis a member asks the host to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InsightRequest {
    /// The analysis and its parameters.
    pub insight: Insight,
    /// Who asks, within the calling member.
    #[serde(default = "default_analyst")]
    pub analyst: String,
}

/// A measurement a member asks the host to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasureRequest {
    /// The measurement and its settings.
    pub measure: Measure,
    /// Who asks, within the calling member.
    #[serde(default = "default_analyst")]
    pub analyst: String,
}

/// A refusal or failure as the host sends it: (status, problem code, detail).
pub(crate) type Problem = (StatusCode, &'static str, String);

pub(crate) fn internal(e: &dyn std::fmt::Display) -> Problem {
    (StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

/// The engine over the host's joined view of collaboration `body`, the view's
/// description, and the budget key of `caller`'s `analyst`.
pub(crate) async fn open_engine(
    dir: &Path,
    body: &ContractBody,
    caller: &str,
    analyst: &str,
) -> std::result::Result<(Engine, jingteng_engine::ViewInfo, String), Problem> {
    if !valid_analyst(analyst) {
        return Err((
            StatusCode::BAD_REQUEST,
            "bad-analyst",
            "an analyst is named by 1 to 64 letters, digits, '_', '.' or '-'".into(),
        ));
    }
    let collab = jingteng_psi::Collaboration::parse(&body.spec).map_err(|e| internal(&e))?;
    let view = crate::view_dir(dir, collab.id());
    let info = jingteng_engine::view::load(&view).map_err(|_| {
        (
            StatusCode::CONFLICT,
            "no-view",
            format!(
                "no joined view of {} yet: the host runs `jingteng match --collab {}` first",
                collab.id(),
                collab.id()
            ),
        )
    })?;
    let node = NodeDir::open(dir).map_err(|e| internal(&e))?;
    let catalog = node.catalog().map_err(|e| internal(&e))?;
    let engine = Engine::open(&collab, &view, &info, catalog, Limits::default())
        .await
        .map_err(|e| internal(&e))?;
    Ok((engine, info, format!("{caller}:{analyst}")))
}

/// The host's answer to `caller`'s query on collaboration `body`.
pub(crate) async fn answer(
    dir: &Path,
    body: &ContractBody,
    caller: &str,
    req: QueryRequest,
) -> std::result::Result<QueryReply, Problem> {
    let (engine, _, analyst) = open_engine(dir, body, caller, &req.analyst).await?;
    if req.explain {
        let approved = engine.approve(&req.sql).await.map_err(refusal)?;
        return Ok(QueryReply::Explain {
            tables: approved.tables.iter().cloned().collect(),
            privacy: serde_json::to_value(approved.privacy).map_err(|e| internal(&e))?,
            plan: approved.plan().display_indent().to_string(),
        });
    }
    engine
        .query(&req.sql, &analyst)
        .await
        .map(QueryReply::Answer)
        .map_err(refusal)
}

/// The host's run of a ready analysis for `caller`.
pub(crate) async fn answer_insight(
    dir: &Path,
    body: &ContractBody,
    caller: &str,
    req: InsightRequest,
) -> std::result::Result<Vec<Released>, Problem> {
    let (mut engine, _, analyst) = open_engine(dir, body, caller, &req.analyst).await?;
    templates::insight(&mut engine, &req.insight, &analyst)
        .await
        .map_err(refusal)
}

/// The host's run of a measurement for `caller`.
pub(crate) async fn answer_measure(
    dir: &Path,
    body: &ContractBody,
    caller: &str,
    req: MeasureRequest,
) -> std::result::Result<Report, Problem> {
    let (mut engine, info, analyst) = open_engine(dir, body, caller, &req.analyst).await?;
    req.measure
        .run(&mut engine, &info, &analyst)
        .await
        .map_err(measure_problem)
}

/// How a measurement's error goes back: an engine refusal as [`refusal`], settings out
/// of range as `bad-settings`.
pub(crate) fn measure_problem(e: jingteng_measure::Error) -> Problem {
    match e {
        jingteng_measure::Error::Engine(e) => refusal(e),
        jingteng_measure::Error::Input(m) => (StatusCode::BAD_REQUEST, "bad-settings", m),
        e => internal(&e),
    }
}

/// How an engine error goes back to the member.
pub(crate) fn refusal(e: jingteng_engine::Error) -> Problem {
    use jingteng_engine::Error as E;
    let (status, code) = match &e {
        E::Refused(_) => (StatusCode::UNPROCESSABLE_ENTITY, "refused"),
        E::ResourceLimit(_) => (StatusCode::UNPROCESSABLE_ENTITY, "resource-limit"),
        E::BudgetExhausted { .. } => (StatusCode::TOO_MANY_REQUESTS, "budget-exhausted"),
        E::Sql(_) => (StatusCode::BAD_REQUEST, "bad-query"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    (status, code, e.to_string())
}

/// Sends a query to the host of `collaboration` as this node's member, over mutual TLS.
/// A refusal comes back as [`Error::Remote`] with the host's code (`refused`,
/// `resource-limit`, `budget-exhausted`, `bad-query`, `no-view`, …) and its explanation.
pub async fn query_host(
    node: &NodeDir,
    collaboration: &str,
    req: &QueryRequest,
) -> Result<QueryReply> {
    post_host(node, collaboration, "query", req).await
}

/// Asks the host of `collaboration` to run a ready analysis, as [`query_host`] does.
pub async fn insight_host(
    node: &NodeDir,
    collaboration: &str,
    req: &InsightRequest,
) -> Result<Vec<Released>> {
    post_host(node, collaboration, "insight", req).await
}

/// Asks the host of `collaboration` to run a measurement, as [`query_host`] does.
pub async fn measure_host(
    node: &NodeDir,
    collaboration: &str,
    req: &MeasureRequest,
) -> Result<Report> {
    post_host(node, collaboration, "measure", req).await
}

pub(crate) async fn post_host<T: serde::de::DeserializeOwned>(
    node: &NodeDir,
    collaboration: &str,
    what: &str,
    req: &impl Serialize,
) -> Result<T> {
    let json = serde_json::to_vec(req).map_err(|e| Error::Internal(e.to_string()))?;
    call_host(node, collaboration, hyper::Method::POST, what, Some(json)).await
}

/// One call to the host of `collaboration` at `/v1/collaborations/{id}/{what}`, with a
/// JSON body for a POST; a problem answer becomes [`Error::Remote`].
pub(crate) async fn call_host<T: serde::de::DeserializeOwned>(
    node: &NodeDir,
    collaboration: &str,
    method: hyper::Method,
    what: &str,
    json: Option<Vec<u8>>,
) -> Result<T> {
    let body = crate::server::active_contract(node, collaboration)?;
    let collab = jingteng_psi::Collaboration::parse(&body.spec)
        .map_err(|e| Error::Contract(e.to_string()))?;
    let host = collab.host().ok_or_else(|| {
        Error::Contract(format!(
            "{collaboration}: the spec names no host (collaboration.host)"
        ))
    })?;
    let card = body
        .members
        .iter()
        .find(|m| m.party == host)
        .ok_or_else(|| Error::Contract(format!("the host {host} is not a member")))?;
    let (status, bytes) = crate::server::request_peer(
        node,
        &card.endpoint,
        &card.cert_sha256,
        method,
        &format!("/v1/collaborations/{collaboration}/{what}"),
        json.map(|j| ("application/json", j.into())),
    )
    .await?;
    if status == 200 {
        return serde_json::from_slice(&bytes).map_err(|e| Error::Peer {
            addr: card.endpoint.clone(),
            message: format!("the host answered something that is not an answer: {e}"),
        });
    }
    let problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let code = problem["type"]
        .as_str()
        .and_then(|t| t.strip_prefix("urn:jingteng:error:"))
        .unwrap_or("error")
        .to_string();
    Err(Error::Remote {
        host: host.to_string(),
        status,
        code,
        detail: crate::retry::problem_detail(&bytes),
    })
}
