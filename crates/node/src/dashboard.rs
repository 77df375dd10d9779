//! The web dashboard: what a node knows, for people, in a browser.
//!
//! Browsers cannot present the pinned client certificates the node-to-node API demands,
//! so the dashboard is a separate listener: plain HTTP, **loopback only** (an address
//! that is not loopback is refused; put a TLS reverse proxy in front to reach it from
//! elsewhere), started by [`serve`](crate::serve) when `node.toml` sets `dashboard`.
//!
//! Access takes one of the node's two tokens, kept in `secrets/` (mode 0600, made at
//! `init` or at the dashboard's first start, never logged):
//!
//! - the **operator** token sees everything and may act (`POST /api/…`);
//! - the **analyst** token sees the same read-only views and may not act.
//!
//! Without a valid token every page, asset and API answers 401. A token is presented
//! as `Authorization: Bearer TOKEN`, or — for `GET` only, so that a browser can open a
//! page — as `?token=TOKEN` (the page then keeps it in an `HttpOnly`, `SameSite=Strict`
//! cookie and removes it from the address bar). Actions take the header only, so that
//! no other page a browser has open can trigger one.
//!
//! The API answers JSON read from the node's catalog and data directory; errors are
//! `application/problem+json`, as on the node-to-node API. Pages are one single-page
//! application (`assets/`), with Apache ECharts vendored from npm (`assets/vendor.sh`);
//! everything is embedded in the binary.
//!
//! Adding a page for a new capability (insight, audiences, campaigns, privacy budget):
//! one route in [`router`] for its data, one entry in `PAGES` in `assets/app.js` and
//! its strings in `I18N` there.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::server::problem;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::TryRngCore;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::contract::Contract;
use crate::{Error, NodeConfig, NodeDir, Result, file_err, netmatch, read_secret};

mod reports;

/// Where the operator token lives, relative to the data directory.
pub const OPERATOR_TOKEN_FILE: &str = "secrets/dashboard-operator.token";
/// Where the analyst token lives, relative to the data directory.
pub const ANALYST_TOKEN_FILE: &str = "secrets/dashboard-analyst.token";

/// Audit entries one `GET /api/audit` returns unless `?limit=` says otherwise.
const AUDIT_PAGE: usize = 500;
/// The most audit entries one request may ask for.
const AUDIT_MAX: usize = 5_000;
/// Match runs whose report `GET /api/match` includes (the newest).
const REPORTS_LISTED: usize = 20;

/// Who a dashboard request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// The node's operator: every view, and actions.
    Operator,
    /// An analyst: every view, read-only.
    Analyst,
}

/// A dashboard access token: a secret (redacted `Debug`, zeroised on drop, compared in
/// constant time).
#[derive(Clone)]
pub struct Token(Zeroizing<String>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// The token's text, to put in a URL for the person it belongs to. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, in time that does not depend on where they
    /// differ (both are hashed first, so lengths do not leak either).
    fn matches(&self, presented: &[u8]) -> bool {
        let a = Sha256::digest(self.0.as_bytes());
        let b = Sha256::digest(presented);
        a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }
}

/// A node's two dashboard tokens.
#[derive(Debug, Clone)]
pub struct DashboardTokens {
    operator: Token,
    analyst: Token,
}

impl DashboardTokens {
    /// The operator's token (every view, and actions).
    pub fn operator(&self) -> &Token {
        &self.operator
    }

    /// The analysts' token (read-only views).
    pub fn analyst(&self) -> &Token {
        &self.analyst
    }

    /// The role `presented` grants, if any. Both tokens are always compared.
    fn role(&self, presented: &[u8]) -> Option<Role> {
        let operator = self.operator.matches(presented);
        let analyst = self.analyst.matches(presented);
        match (operator, analyst) {
            (true, _) => Some(Role::Operator),
            (false, true) => Some(Role::Analyst),
            (false, false) => None,
        }
    }
}

/// The node's dashboard tokens, each made (in `secrets/`, mode 0600) if missing.
pub fn dashboard_tokens(node: &NodeDir) -> Result<DashboardTokens> {
    ensure_tokens(node.dir())
}

pub(crate) fn ensure_tokens(dir: &Path) -> Result<DashboardTokens> {
    Ok(DashboardTokens {
        operator: token_file(&dir.join(OPERATOR_TOKEN_FILE), "op_")?,
        analyst: token_file(&dir.join(ANALYST_TOKEN_FILE), "an_")?,
    })
}

/// Reads the token at `path`, first writing a new one (`prefix` + 64 hex digits of OS
/// randomness) if there is none.
fn token_file(path: &Path, prefix: &str) -> Result<Token> {
    if !path.exists() {
        let mut raw = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng
            .try_fill_bytes(raw.as_mut())
            .map_err(|e| Error::Internal(format!("the operating system's RNG failed: {e}")))?;
        let text = Zeroizing::new(format!("{prefix}{}", crate::hex(raw.as_ref())));
        match crate::write_secret(path, text.as_bytes()) {
            Ok(()) => {}
            // Another process made it first: use theirs.
            Err(_) if path.exists() => {}
            Err(e) => return Err(e),
        }
    }
    let bytes = read_secret(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| file_err(path, "not a dashboard token (not UTF-8)"))?
        .trim();
    let valid = text.len() >= 32 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(file_err(
            path,
            "not a dashboard token (at least 32 letters, digits or _); delete it to have a new one made",
        ));
    }
    Ok(Token(Zeroizing::new(text.to_string())))
}

/// The dashboard address `node.toml` sets, checked: a socket address on loopback.
pub fn dashboard_addr(node: &NodeDir) -> Result<Option<SocketAddr>> {
    dashboard_addr_of(node.dir(), node.config())
}

pub(crate) fn dashboard_addr_of(dir: &Path, config: &NodeConfig) -> Result<Option<SocketAddr>> {
    let Some(text) = config.dashboard.as_deref() else {
        return Ok(None);
    };
    let path = dir.join("node.toml");
    let addr: SocketAddr = text.parse().map_err(|_| {
        file_err(
            &path,
            format!("dashboard = {text:?}: not an address such as \"127.0.0.1:7480\""),
        )
    })?;
    if !addr.ip().is_loopback() {
        return Err(file_err(
            &path,
            format!(
                "dashboard = {text:?}: the dashboard speaks plain HTTP and listens on loopback only \
                 (127.0.0.1 or ::1); put a TLS reverse proxy in front of it to reach it from elsewhere"
            ),
        ));
    }
    Ok(Some(addr))
}

/// The URL that opens the dashboard at `addr` with `token`. Give it only to the
/// person the token is for.
pub fn dashboard_url(addr: SocketAddr, token: &Token) -> String {
    format!("http://{addr}/?token={}", token.expose())
}

/// What every handler gets.
#[derive(Clone)]
struct DashState {
    party: String,
    dir: Arc<PathBuf>,
    tokens: Arc<DashboardTokens>,
    /// Name of the cookie that keeps the token (one per party: nodes on one host share
    /// cookies across ports).
    cookie: String,
    /// What the insight, campaign and budget pages keep between requests.
    reports: Arc<reports::Reports>,
}

/// The dashboard's routes, behind the token check.
pub(crate) fn router(node: &NodeDir) -> Result<Router> {
    let state = DashState {
        party: node.config().party.clone(),
        dir: Arc::new(node.dir().to_path_buf()),
        tokens: Arc::new(dashboard_tokens(node)?),
        cookie: format!("jingteng_dashboard_{}", node.config().party),
        reports: Arc::new(reports::Reports::default()),
    };
    // Capabilities add their API here, one route each, read-only unless an operator
    // action: insight (/api/insight), audiences (/api/audiences), campaigns
    // (/api/campaigns: attribution, lift, reach), privacy budget (/api/budget).
    let api = Router::new()
        .route("/api/session", get(session))
        .route("/api/node", get(node_info))
        .route("/api/jobs", get(jobs))
        .route("/api/match", get(match_runs))
        .route("/api/match/{run}", get(match_run))
        .route("/api/audit", get(audit))
        .route("/api/audit/verify", post(audit_verify))
        .route("/api/datasets", get(datasets))
        .route("/api/insight", get(reports::insight))
        .route("/api/campaigns", get(reports::campaigns))
        .route("/api/budget", get(reports::budget))
        .route("/api/audiences", get(audiences).post(create_audience))
        .route(
            "/api/audiences/{collab}/{name}/deliver",
            post(deliver_audience),
        );
    Ok(Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/assets/{file}", get(asset))
        .merge(api)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(16 << 10))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(middleware::map_response(security_headers))
        .with_state(state))
}

/// Serves the dashboard on `listener` until `shutdown` completes.
pub async fn serve_dashboard(
    node: &NodeDir,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let app = router(node)?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| Error::Internal(format!("the dashboard stopped: {e}")))
}

/// Binds the address `node.toml` sets and serves the dashboard there until `halt` is
/// set; nothing when it sets none.
pub(crate) async fn spawn_from_config(
    node: &NodeDir,
    halt: crate::retry::Halt,
) -> Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = dashboard_addr(node)? else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        file_err(
            &node.dir().join("node.toml"),
            format!("dashboard = \"{addr}\": cannot listen there: {e}"),
        )
    })?;
    let app = router(node)?;
    Ok(Some(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { halt.wait().await })
            .await;
    })))
}

// ---------------------------------------------------------------------------------
// Access

/// The token a request presents: the `Authorization: Bearer` header; for GET and HEAD
/// also the `token` query parameter, then the cookie. The bool says it came by query.
fn presented<'a>(req: &'a Request, cookie: &str) -> Option<(&'a [u8], bool)> {
    if let Some(v) = req.headers().get(header::AUTHORIZATION) {
        let v = v.as_bytes();
        return v.strip_prefix(b"Bearer ").map(|t| (t, false));
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return None;
    }
    if let Some(q) = req.uri().query()
        && let Some(t) = q.split('&').find_map(|kv| kv.strip_prefix("token="))
    {
        return Some((t.as_bytes(), true));
    }
    cookie_value(req.headers(), cookie).map(|t| (t, false))
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|kv| {
            let kv = kv.trim_ascii();
            kv.strip_prefix(name.as_bytes())?.strip_prefix(b"=")
        })
}

/// Lets through requests with a valid token (their [`Role`] in the extensions); 401
/// for every other one.
async fn authenticate(State(state): State<DashState>, mut req: Request, next: Next) -> Response {
    let found =
        presented(&req, &state.cookie).map(|(t, by_query)| (state.tokens.role(t), by_query));
    let Some((Some(role), by_query)) = found else {
        return unauthorised(req.uri().path().starts_with("/api/"));
    };
    req.extensions_mut().insert(role);
    let mut response = next.run(req).await;
    if by_query {
        // Keep the token for the page's assets and reloads, for this party only.
        let token = match role {
            Role::Operator => state.tokens.operator(),
            Role::Analyst => state.tokens.analyst(),
        };
        let cookie = format!(
            "{}={}; Path=/; HttpOnly; SameSite=Strict",
            state.cookie,
            token.expose()
        );
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

fn unauthorised(api: bool) -> Response {
    let mut r = if api {
        problem(
            StatusCode::UNAUTHORIZED,
            "unauthorised",
            "a dashboard token is required: `Authorization: Bearer TOKEN` (see docs/dashboard.md)",
        )
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            UNAUTHORISED_PAGE,
        )
            .into_response()
    };
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"jingteng-dashboard\""),
    );
    r
}

const UNAUTHORISED_PAGE: &str = "<!doctype html><html><head><meta charset=\"utf-8\">\
<title>401 · Jingteng</title></head><body style=\"font-family:sans-serif;margin:3em\">\
<h1>401</h1><p>This dashboard needs a token: open the URL that <code>jingteng demo</code> \
printed, or <code>http://ADDRESS/?token=…</code> with the token in the node's \
<code>secrets/dashboard-operator.token</code> (or <code>dashboard-analyst.token</code> \
for read-only access).</p><p>此控制台需要访问令牌：请打开 <code>jingteng demo</code> \
打印的网址，或在网址后加上 <code>?token=…</code>（令牌位于节点的 \
<code>secrets/dashboard-operator.token</code>，只读访问用 \
<code>dashboard-analyst.token</code>）。</p></body></html>";

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // The page's address may hold a token: never send it anywhere.
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    r
}

// ---------------------------------------------------------------------------------
// Pages and assets

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const ECHARTS_JS: &[u8] = include_bytes!("../assets/vendor/echarts.min.js");
const ECHARTS_LICENSE: &str = include_str!("../assets/vendor/ECHARTS-LICENSE");

async fn index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
        .into_response()
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (ctype, body): (&str, Body) = match file.as_str() {
        "app.js" => ("text/javascript; charset=utf-8", APP_JS.into()),
        "app.css" => ("text/css; charset=utf-8", APP_CSS.into()),
        "echarts.min.js" => ("text/javascript; charset=utf-8", ECHARTS_JS.into()),
        "ECHARTS-LICENSE.txt" => ("text/plain; charset=utf-8", ECHARTS_LICENSE.into()),
        _ => return not_found().await,
    };
    ([(header::CONTENT_TYPE, ctype)], body).into_response()
}

async fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not-found",
        "no such page or endpoint on the dashboard",
    )
}

// ---------------------------------------------------------------------------------
// The API

fn ok_json(v: Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

/// An error of a handler: a 4xx the client caused, or a 500.
enum ApiError {
    BadRequest(&'static str, String),
    NotFound(&'static str, String),
    Internal(String),
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<jingteng_catalog::Error> for ApiError {
    fn from(e: jingteng_catalog::Error) -> Self {
        ApiError::Internal(format!("catalog: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::BadRequest(code, d) => problem(StatusCode::BAD_REQUEST, code, &d),
            ApiError::NotFound(code, d) => problem(StatusCode::NOT_FOUND, code, &d),
            ApiError::Internal(d) => problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", &d),
        }
    }
}

/// Runs `f` on the node's directory off the async workers (the catalog is SQLite) and
/// answers its JSON.
async fn blocking(
    state: &DashState,
    f: impl FnOnce(&NodeDir) -> Result<Value, ApiError> + Send + 'static,
) -> Response {
    let dir = state.dir.clone();
    let done = tokio::task::spawn_blocking(move || {
        let node = NodeDir::open(&dir)?;
        f(&node)
    })
    .await;
    match done {
        Ok(Ok(v)) => ok_json(v),
        Ok(Err(e)) => e.into_response(),
        Err(_) => ApiError::Internal("the request's work crashed".into()).into_response(),
    }
}

async fn session(
    State(state): State<DashState>,
    axum::Extension(role): axum::Extension<Role>,
) -> Response {
    ok_json(json!({
        "party": state.party,
        "role": role,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// The node and its collaborations: members, contract state, signatures.
async fn node_info(State(state): State<DashState>) -> Response {
    blocking(&state, |node| {
        let card = crate::contract::card(node)?;
        let catalog = node.catalog()?;
        let mut collaborations = Vec::new();
        for (id, text, state) in catalog.collaborations()? {
            collaborations.push(collaboration_json(&id, &text, &state));
        }
        let config = node.config();
        Ok(json!({
            "party": config.party,
            "public_key": config.public_key,
            "endpoint": config.listen,
            "cert_sha256": card.cert_sha256,
            "dashboard": config.dashboard,
            "version": env!("CARGO_PKG_VERSION"),
            "collaborations": collaborations,
        }))
    })
    .await
}

/// One stored contract as the dashboard shows it. A contract that no longer parses or
/// verifies is shown with the reason, not hidden.
fn collaboration_json(id: &str, text: &str, stored_state: &str) -> Value {
    let parsed = serde_json::from_str::<Contract>(text)
        .map_err(|e| format!("stored contract unreadable: {e}"))
        .and_then(|c| {
            let status = c.status().map_err(|e| e.to_string())?;
            let body = c.body().map_err(|e| e.to_string())?;
            Ok((c, status, body))
        });
    let (contract, status, body) = match parsed {
        Ok(p) => p,
        Err(e) => {
            return json!({ "id": id, "state": stored_state, "error": e });
        }
    };
    let spec: toml::Table = body.spec.parse().unwrap_or_default();
    let section = spec.get("collaboration").and_then(toml::Value::as_table);
    let host = section
        .and_then(|s| s.get("host"))
        .and_then(toml::Value::as_str);
    let description = section
        .and_then(|s| s.get("description"))
        .and_then(toml::Value::as_str);
    let parties: BTreeMap<&str, &toml::Table> = spec
        .get("party")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(toml::Value::as_table)
        .filter_map(|p| Some((p.get("name")?.as_str()?, p)))
        .collect();
    let members: Vec<Value> = body
        .members
        .iter()
        .map(|m| {
            let p = parties.get(m.party.as_str());
            let tables: Vec<&str> = p
                .and_then(|p| p.get("table"))
                .and_then(toml::Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|t| t.get("name")?.as_str())
                .collect();
            json!({
                "party": m.party,
                "description": p.and_then(|p| p.get("description")).and_then(toml::Value::as_str),
                "host": host == Some(m.party.as_str()),
                "proposer": body.proposer == m.party,
                "endpoint": m.endpoint,
                "cert_sha256": m.cert_sha256,
                "public_key": m.public_key,
                "tables": tables,
                "signed": status.signed.contains(&m.party),
                "signature": contract.signatures.get(&m.party),
            })
        })
        .collect();
    json!({
        "id": id,
        "state": stored_state,
        "active": status.active,
        "contract_sha256": status.contract_sha256,
        "description": description,
        "host": host,
        "proposer": body.proposer,
        "signed": status.signed,
        "pending": status.pending,
        "members": members,
    })
}

fn job_json(j: &jingteng_catalog::Job) -> Value {
    json!({
        "id": j.id,
        "kind": j.kind,
        "collaboration": j.collaboration,
        "state": j.state,
        "attempts": j.attempts,
        "progress": serde_json::from_str::<Value>(&j.progress).unwrap_or(Value::Null),
        "error": j.error,
        "created_ms": j.created_ms,
        "updated_ms": j.updated_ms,
    })
}

async fn jobs(State(state): State<DashState>) -> Response {
    blocking(&state, |node| {
        let jobs: Vec<Value> = node.catalog()?.jobs()?.iter().map(job_json).collect();
        Ok(json!({ "jobs": jobs }))
    })
    .await
}

/// The match runs this node hosts (newest first), with the reports of the newest.
async fn match_runs(State(state): State<DashState>) -> Response {
    blocking(&state, |node| {
        let mut runs = Vec::new();
        for j in node.catalog()?.jobs()?.iter().filter(|j| j.kind == "match") {
            let Some(run) = run_of(j) else { continue };
            let with_report = runs.len() < REPORTS_LISTED;
            runs.push(run_json(node, j, &run, with_report));
        }
        runs.sort_by_key(|r| std::cmp::Reverse(r["created_ms"].as_i64().unwrap_or(0)));
        Ok(json!({ "runs": runs }))
    })
    .await
}

/// One match run this node hosts, with its report.
async fn match_run(
    State(state): State<DashState>,
    axum::extract::Path(run): axum::extract::Path<String>,
) -> Response {
    if !netmatch::valid_run_id(&run) {
        return ApiError::BadRequest("bad-run", "a run id is 16 lower-case hex digits".into())
            .into_response();
    }
    blocking(&state, move |node| {
        let jobs = node.catalog()?.jobs()?;
        let job = jobs
            .iter()
            .find(|j| j.kind == "match" && run_of(j).as_deref() == Some(run.as_str()))
            .ok_or_else(|| {
                ApiError::NotFound("no-run", format!("this node hosts no match run {run}"))
            })?;
        Ok(run_json(node, job, &run, true))
    })
    .await
}

fn run_of(job: &jingteng_catalog::Job) -> Option<String> {
    let progress: Value = serde_json::from_str(&job.progress).ok()?;
    progress["run"]
        .as_str()
        .filter(|r| netmatch::valid_run_id(r))
        .map(str::to_string)
}

fn run_json(node: &NodeDir, job: &jingteng_catalog::Job, run: &str, with_report: bool) -> Value {
    let mut v = json!({
        "run": run,
        "job": job.id,
        "collaboration": job.collaboration,
        "state": job.state,
        "attempts": job.attempts,
        "error": job.error,
        "created_ms": job.created_ms,
        "updated_ms": job.updated_ms,
        "received": serde_json::from_str::<Value>(&job.progress).map(|p| p["received"].clone()).unwrap_or(Value::Null),
    });
    if with_report && job.state == "done" {
        match netmatch::load_report(node.dir(), run) {
            Ok(Some(report)) => {
                v["summary"] = match_summary(&report);
                v["report"] = serde_json::to_value(&report).unwrap_or(Value::Null);
            }
            Ok(None) => v["report_error"] = json!("the run is done but its report is missing"),
            Err(e) => v["report_error"] = json!(e.to_string()),
        }
    }
    v
}

/// Identifier types in the order the dashboard shows them.
const ID_TYPE_ORDER: [&str; 4] = ["phone", "email", "device", "opaque"];

/// Match rates from a report: for every set of parties, the people matched (overall
/// and through each identifier type alone) as a share of the records of its smallest
/// party — the most that set could match.
fn match_summary(report: &jingteng_match::MatchReport) -> Value {
    let mut id_types: Vec<String> = Vec::new();
    for o in report.overlap.values() {
        for t in o.by_id_type.keys() {
            if !id_types.contains(t) {
                id_types.push(t.clone());
            }
        }
    }
    id_types.sort_by_key(|t| {
        ID_TYPE_ORDER
            .iter()
            .position(|o| o == t)
            .unwrap_or(ID_TYPE_ORDER.len())
    });
    let rate = |n: u64, base: u64| {
        if base == 0 {
            Value::Null
        } else {
            json!(n as f64 / base as f64)
        }
    };
    let mut sets: Vec<(usize, Value)> = Vec::new();
    for (key, o) in &report.overlap {
        let parties: Vec<&str> = key.split('+').collect();
        let base = parties
            .iter()
            .filter_map(|p| report.records.get(*p).map(|n| (*p, *n)))
            .min_by_key(|(_, n)| *n);
        let (base_party, base_records) = base.unwrap_or(("", 0));
        let by_id_type: serde_json::Map<String, Value> = id_types
            .iter()
            .map(|t| {
                let n = o.by_id_type.get(t).copied().unwrap_or(0);
                (
                    t.clone(),
                    json!({ "matched": n, "rate": rate(n, base_records) }),
                )
            })
            .collect();
        sets.push((
            parties.len(),
            json!({
                "set": key,
                "parties": parties,
                "matched": o.matched,
                "base_party": base_party,
                "base_records": base_records,
                "rate": rate(o.matched, base_records),
                "by_id_type": by_id_type,
            }),
        ));
    }
    // Pairs first, then larger sets; in the report's (spec) order within a size.
    sets.sort_by_key(|(n, _)| *n);
    json!({
        "id_types": id_types,
        "records": report.records,
        "parties": report.parties,
        "sets": sets.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    })
}

/// Parses `?limit=N` (default [`AUDIT_PAGE`], at most [`AUDIT_MAX`]).
fn audit_limit(query: Option<&str>) -> Result<usize, ApiError> {
    let Some(v) = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("limit="))
    else {
        return Ok(AUDIT_PAGE);
    };
    match v.parse::<usize>() {
        Ok(n) if (1..=AUDIT_MAX).contains(&n) => Ok(n),
        _ => Err(ApiError::BadRequest(
            "bad-limit",
            format!("limit: a number of entries from 1 to {AUDIT_MAX}"),
        )),
    }
}

/// The audit log, newest first, and whether its hash chain verifies.
async fn audit(State(state): State<DashState>, uri: axum::http::Uri) -> Response {
    let limit = match audit_limit(uri.query()) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    blocking(&state, move |node| {
        let catalog = node.catalog()?;
        let entries = catalog.audit_entries()?;
        let total = entries.len();
        let newest: Vec<&jingteng_catalog::AuditEntry> = entries.iter().rev().take(limit).collect();
        let by_action = entries
            .iter()
            .fold(BTreeMap::<&str, u64>::new(), |mut m, e| {
                *m.entry(e.action.as_str()).or_default() += 1;
                m
            });
        Ok(json!({
            "total": total,
            "entries": newest.iter().map(|e| entry_json(e)).collect::<Vec<_>>(),
            "by_action": by_action,
            "verify": verify_json(&catalog),
        }))
    })
    .await
}

fn entry_json(e: &jingteng_catalog::AuditEntry) -> Value {
    json!({
        "seq": e.seq,
        "ts_ms": e.ts_ms,
        "actor": e.actor,
        "action": e.action,
        "subject": e.subject,
        "details": serde_json::from_str::<Value>(&e.details).unwrap_or_else(|_| json!(e.details)),
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    })
}

fn verify_json(catalog: &jingteng_catalog::Catalog) -> Value {
    match catalog.verify_audit() {
        Ok(n) => json!({ "ok": true, "entries": n }),
        Err(e) => json!({ "ok": false, "error": e.to_string() }),
    }
}

/// Operator action: verifies the audit chain now and records that it did (the record
/// is itself an entry, so the answer counts it).
async fn audit_verify(
    State(state): State<DashState>,
    axum::Extension(role): axum::Extension<Role>,
) -> Response {
    if role != Role::Operator {
        return problem(
            StatusCode::FORBIDDEN,
            "operator-only",
            "this action needs the node's operator token; the analyst token is read-only",
        );
    }
    blocking(&state, |node| {
        let mut catalog = node.catalog()?;
        let before = verify_json(&catalog);
        let party = node.config().party.clone();
        catalog.audit(
            &party,
            "audit-verify",
            &party,
            &json!({ "ok": before["ok"], "entries": before["entries"], "via": "dashboard" }),
        )?;
        Ok(json!({ "checked": before, "verify": verify_json(&catalog) }))
    })
    .await
}

/// Imported datasets: the latest version of each, with the versions before it (from
/// the audit log's import entries).
async fn datasets(State(state): State<DashState>) -> Response {
    blocking(&state, |node| {
        let catalog = node.catalog()?;
        let mut history: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for e in catalog
            .audit_entries()?
            .iter()
            .filter(|e| e.action == "import")
        {
            let d: Value = serde_json::from_str(&e.details).unwrap_or(Value::Null);
            history.entry(e.subject.clone()).or_default().push(json!({
                "version": d["version"],
                "rows": d["rows"],
                "sha256": d["sha256"],
                "ts_ms": e.ts_ms,
                "actor": e.actor,
            }));
        }
        let list: Vec<Value> = catalog
            .datasets()?
            .into_iter()
            .map(|d| {
                let columns: Vec<Value> =
                    serde_json::from_str::<Vec<(String, String)>>(&d.schema_json)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(name, ty)| json!({ "name": name, "type": ty }))
                        .collect();
                let mut versions = history.remove(&d.name).unwrap_or_default();
                versions.reverse();
                json!({
                    "name": d.name,
                    "version": d.version,
                    "rows": d.rows,
                    "path": d.path,
                    "source": d.source,
                    "sha256": d.sha256,
                    "columns": columns,
                    "versions": versions,
                })
            })
            .collect();
        Ok(json!({ "datasets": list }))
    })
    .await
}

// ---------------------------------------------------------------------------------
// Audiences: what the host keeps (through the node API, as `jingteng audience list
// --collab` asks it) and what was delivered to this node; operator actions create and
// deliver through the same client calls as the CLI.

/// The audiences of every active collaboration: the host's list (sizes as released,
/// versions) and the versions delivered to this node as an activation party.
async fn audiences(State(state): State<DashState>) -> Response {
    let node = match NodeDir::open(&state.dir) {
        Ok(n) => n,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let ids: Vec<String> = match node.catalog().and_then(|c| Ok(c.collaborations()?)) {
        Ok(list) => list
            .into_iter()
            .filter(|(_, _, st)| st == "active")
            .map(|(id, _, _)| id)
            .collect(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut out = Vec::new();
    for id in ids {
        let Ok(body) = crate::server::active_contract(&node, &id) else {
            continue;
        };
        let collab = jingteng_psi::Collaboration::parse(&body.spec).ok();
        let parties: Vec<Value> = collab
            .iter()
            .flat_map(|c| c.parties())
            .map(|p| {
                let tables: Vec<Value> = p
                    .all_tables()
                    .filter(|t| t.record_id.is_some())
                    .map(|t| {
                        let columns: Vec<&String> = t
                            .dimensions
                            .iter()
                            .chain(&t.measures)
                            .chain(&t.timestamps)
                            .collect();
                        json!({ "name": format!("{}.{}", p.name, t.name), "columns": columns })
                    })
                    .collect();
                json!({ "name": p.name, "tables": tables })
            })
            .collect();
        let host = collab.as_ref().and_then(|c| c.host().map(str::to_string));
        let (list, error) = match crate::audiences::audience_list(&node, &id).await {
            Ok(l) => (serde_json::to_value(l).unwrap_or(Value::Null), None),
            Err(e) => (json!([]), Some(e.to_string())),
        };
        let held: Vec<Value> = crate::audiences::delivered_here(&node, &id)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, versions)| json!({ "name": name, "versions": versions }))
            .collect();
        out.push(json!({
            "id": id,
            "host": host,
            "parties": parties,
            "audiences": list,
            "error": error,
            "delivered_here": held,
        }));
    }
    ok_json(json!({ "party": state.party, "collaborations": out }))
}

/// What the dashboard's form sends.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateForm {
    collaboration: String,
    definition: jingteng_audience::DefinitionFile,
    #[serde(default)]
    analyst: Option<String>,
}

fn operator_only(role: Role) -> Option<Response> {
    (role != Role::Operator).then(|| {
        problem(
            StatusCode::FORBIDDEN,
            "operator-only",
            "this action needs the node's operator token; the analyst token is read-only",
        )
    })
}

/// How a refusal from the host reaches the browser: its status and code, its detail.
fn remote_problem(e: Error) -> Response {
    match e {
        Error::Remote {
            status,
            code,
            detail,
            ..
        } => problem(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
            &code,
            &detail,
        ),
        Error::Contract(detail) => problem(StatusCode::BAD_REQUEST, "no-collaboration", &detail),
        other => problem(
            StatusCode::BAD_GATEWAY,
            "host-unreachable",
            &other.to_string(),
        ),
    }
}

/// Operator action: defines an audience at the collaboration's host, as `jingteng
/// audience create --collab` does (the size is charged to `PARTY:dashboard` unless the
/// form names an analyst).
async fn create_audience(
    State(state): State<DashState>,
    axum::Extension(role): axum::Extension<Role>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = operator_only(role) {
        return r;
    }
    let form: CreateForm = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad-request",
                &format!("not an audience form: {e}"),
            );
        }
    };
    let node = match NodeDir::open(&state.dir) {
        Ok(n) => n,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let req = crate::audiences::CreateAudience {
        definition: form.definition,
        analyst: form.analyst.unwrap_or_else(|| "dashboard".into()),
    };
    match crate::audiences::audience_create(&node, &form.collaboration, &req).await {
        Ok(created) => ok_json(serde_json::to_value(created).unwrap_or(Value::Null)),
        Err(e) => remote_problem(e),
    }
}

/// Operator action: has the host deliver the next version of an audience, as `jingteng
/// audience deliver --collab` does.
async fn deliver_audience(
    State(state): State<DashState>,
    axum::Extension(role): axum::Extension<Role>,
    axum::extract::Path((collab, name)): axum::extract::Path<(String, String)>,
) -> Response {
    if let Some(r) = operator_only(role) {
        return r;
    }
    let node = match NodeDir::open(&state.dir) {
        Ok(n) => n,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let req = crate::audiences::DeliverAudience {
        analyst: "dashboard".into(),
    };
    match crate::audiences::audience_deliver(&node, &collab, &name, &req).await {
        Ok(d) => ok_json(serde_json::to_value(d).unwrap_or(Value::Null)),
        Err(e) => remote_problem(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request as HttpRequest;
    use http_body_util::BodyExt;
    use hyper::service::Service as _;
    use hyper_util::service::TowerToHyperService;

    /// A node with a done match run (its report kept as the host keeps it) and an import.
    fn node() -> (tempfile::TempDir, NodeDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("retail");
        crate::init(&dir, "retail").unwrap();
        let node = NodeDir::open(&dir).unwrap();
        let report = json!({
            "collaboration": "c1",
            "parties": ["social", "retail", "brand"],
            "records": {"social": 1000, "retail": 400, "brand": 100},
            "identifiers": {"retail": {"phone": {"type": "phone", "form": "raw", "rows": 400,
                "missing": 10, "valid": 380, "invalid": 10, "rejected": {}, "ambiguous": 2}}},
            "overlap": {
                "social+retail": {"matched": 200, "by_id_type": {"phone": 150, "device": 80}},
                "social+retail+brand": {"matched": 40, "by_id_type": {"phone": 30, "device": 0}},
                "retail+brand": {"matched": 50, "by_id_type": {"phone": 45, "device": 0}},
            },
            "conflicts": {},
            "channels": {},
            "seconds": 1.5,
        });
        let report: jingteng_match::MatchReport = serde_json::from_value(report).unwrap();
        let run = "0123456789abcdef";
        netmatch::store_report(node.dir(), run, &report).unwrap();
        let mut catalog = node.catalog().unwrap();
        let job = catalog
            .start_job("match", Some("c1"), &json!({"run": run, "received": []}))
            .unwrap();
        catalog.finish_job(job, None).unwrap();
        catalog
            .add_dataset_version(
                "retail",
                "retail/users",
                "t/v1",
                400,
                r#"[["phone","text"]]"#,
                "x",
                "ab",
            )
            .unwrap();
        catalog
            .add_dataset_version(
                "retail",
                "retail/users",
                "t/v2",
                410,
                r#"[["phone","text"]]"#,
                "x",
                "cd",
            )
            .unwrap();
        (tmp, node)
    }

    struct Answer {
        status: StatusCode,
        headers: HeaderMap,
        body: Vec<u8>,
    }

    impl Answer {
        fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap()
        }
    }

    async fn call(
        node: &NodeDir,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let app = TowerToHyperService::new(router(node).unwrap());
        let mut req = HttpRequest::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = app.call(req.body(Body::from(body)).unwrap()).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.into_body().collect().await.unwrap().to_bytes().to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(node: &NodeDir, uri: &str, token: Option<&Token>) -> Answer {
        let auth = token.map(|t| format!("Bearer {}", t.expose()));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        call(node, "GET", uri, &headers, Vec::new()).await
    }

    #[test]
    fn tokens_are_made_at_init_for_the_owner_only_and_never_printed() {
        let (_tmp, node) = node();
        let a = dashboard_tokens(&node).unwrap();
        let b = dashboard_tokens(&node).unwrap();
        assert_eq!(a.operator().expose(), b.operator().expose(), "stable");
        assert_ne!(a.operator().expose(), a.analyst().expose());
        assert!(a.operator().expose().starts_with("op_"));
        assert!(a.analyst().expose().starts_with("an_"));
        let debug = format!("{a:?}");
        assert!(!debug.contains(a.operator().expose()) && !debug.contains(a.analyst().expose()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for f in [OPERATOR_TOKEN_FILE, ANALYST_TOKEN_FILE] {
                let mode = std::fs::metadata(node.dir().join(f))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{f}");
            }
        }
        // A node made before the dashboard existed gets its tokens on first use.
        std::fs::remove_file(node.dir().join(ANALYST_TOKEN_FILE)).unwrap();
        let c = dashboard_tokens(&node).unwrap();
        assert_eq!(c.operator().expose(), a.operator().expose());
        assert_ne!(c.analyst().expose(), a.analyst().expose());
        assert_eq!(a.role(b"op_nope"), None);
        assert_eq!(
            a.role(a.operator().expose().as_bytes()),
            Some(Role::Operator)
        );
        assert_eq!(a.role(a.analyst().expose().as_bytes()), Some(Role::Analyst));
        assert_eq!(a.role(b""), None);
    }

    #[test]
    fn only_loopback_addresses_are_accepted() {
        let (_tmp, mut node) = node();
        assert_eq!(dashboard_addr(&node).unwrap(), None);
        node.set_dashboard(Some("127.0.0.1:7480")).unwrap();
        let reopened = NodeDir::open(node.dir()).unwrap();
        assert_eq!(
            reopened.config().dashboard.as_deref(),
            Some("127.0.0.1:7480")
        );
        assert_eq!(dashboard_addr(&reopened).unwrap().unwrap().port(), 7480);
        let err = node
            .set_dashboard(Some("0.0.0.0:7480"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("loopback only"), "{err}");
        let err = node
            .set_dashboard(Some("localhost"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an address"), "{err}");
        // Refused changes leave node.toml as it was.
        assert_eq!(
            NodeDir::open(node.dir())
                .unwrap()
                .config()
                .dashboard
                .as_deref(),
            Some("127.0.0.1:7480")
        );
        node.set_dashboard(None).unwrap();
        assert!(
            !std::fs::read_to_string(node.dir().join("node.toml"))
                .unwrap()
                .contains("dashboard")
        );
    }

    #[tokio::test]
    async fn without_a_valid_token_everything_is_401() {
        let (_tmp, node) = node();
        for uri in [
            "/",
            "/index.html",
            "/assets/app.js",
            "/assets/echarts.min.js",
            "/api/node",
            "/api/session",
            "/nowhere",
            "/?token=op_wrong",
        ] {
            let a = get(&node, uri, None).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{uri}");
            assert!(a.headers.get(header::WWW_AUTHENTICATE).is_some(), "{uri}");
            assert!(a.headers.get(header::SET_COOKIE).is_none(), "{uri}");
        }
        let bad = Token(Zeroizing::new("op_0000".into()));
        let a = get(&node, "/api/node", Some(&bad)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(a.json()["type"], "urn:jingteng:error:unauthorised");
        let a = call(
            &node,
            "GET",
            "/api/node",
            &[("authorization", "Basic abc")],
            Vec::new(),
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn a_page_opened_with_its_token_keeps_it_in_a_strict_cookie() {
        let (_tmp, node) = node();
        let tokens = dashboard_tokens(&node).unwrap();
        let a = get(
            &node,
            &format!("/?token={}", tokens.analyst().expose()),
            None,
        )
        .await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(String::from_utf8_lossy(&a.body).contains("/assets/app.js"));
        let cookie = a.headers[header::SET_COOKIE].to_str().unwrap().to_string();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
            "{cookie}"
        );
        assert_eq!(a.headers[header::REFERRER_POLICY], "no-referrer");
        assert!(
            a.headers[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        let pair = cookie.split(';').next().unwrap().to_string();
        let a = call(
            &node,
            "GET",
            "/assets/echarts.min.js",
            &[("cookie", &format!("other=1; {pair}"))],
            Vec::new(),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body.len(), ECHARTS_JS.len());
        let a = call(
            &node,
            "GET",
            "/api/session",
            &[("cookie", &pair)],
            Vec::new(),
        )
        .await;
        assert_eq!(a.json()["role"], "analyst");
    }

    #[tokio::test]
    async fn actions_need_the_operator_token_in_the_header() {
        let (_tmp, node) = node();
        let tokens = dashboard_tokens(&node).unwrap();
        let op = format!("Bearer {}", tokens.operator().expose());
        let an = format!("Bearer {}", tokens.analyst().expose());
        let entries = || node.catalog().unwrap().audit_entries().unwrap().len();
        let before = entries();

        let a = call(
            &node,
            "POST",
            "/api/audit/verify",
            &[("authorization", &an)],
            Vec::new(),
        )
        .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        assert_eq!(a.json()["type"], "urn:jingteng:error:operator-only");
        // Not by query, not by cookie: no other page can make the browser act.
        let uri = format!("/api/audit/verify?token={}", tokens.operator().expose());
        assert_eq!(
            call(&node, "POST", &uri, &[], Vec::new()).await.status,
            StatusCode::UNAUTHORIZED
        );
        let cookie = format!("jingteng_dashboard_retail={}", tokens.operator().expose());
        let a = call(
            &node,
            "POST",
            "/api/audit/verify",
            &[("cookie", &cookie)],
            Vec::new(),
        )
        .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(entries(), before, "nothing recorded");

        let a = call(
            &node,
            "POST",
            "/api/audit/verify",
            &[("authorization", &op)],
            Vec::new(),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK);
        let v = a.json();
        assert_eq!(v["checked"], json!({"ok": true, "entries": before}));
        assert_eq!(v["verify"], json!({"ok": true, "entries": before + 1}));
        let audit = get(&node, "/api/audit", Some(tokens.analyst()))
            .await
            .json();
        assert_eq!(audit["entries"][0]["action"], "audit-verify");
        assert_eq!(audit["entries"][0]["details"]["via"], "dashboard");
        assert_eq!(audit["total"], before + 1);
        assert_eq!(audit["verify"]["ok"], true);

        // Audience actions: the operator's only; a malformed form is a 400, a
        // collaboration this node is not in is refused by the client, not a panic.
        let form = br#"{"collaboration":"nowhere","definition":{"name":"a","activate":"social","include":["social.users"]}}"#;
        for uri in ["/api/audiences", "/api/audiences/nowhere/a/deliver"] {
            let a = call(&node, "POST", uri, &[("authorization", &an)], form.to_vec()).await;
            assert_eq!(a.status, StatusCode::FORBIDDEN, "{uri}");
            assert_eq!(a.json()["type"], "urn:jingteng:error:operator-only");
        }
        let a = call(
            &node,
            "POST",
            "/api/audiences",
            &[("authorization", &op)],
            b"{\"collaboration\": 1}".to_vec(),
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        let a = call(
            &node,
            "POST",
            "/api/audiences",
            &[("authorization", &op)],
            form.to_vec(),
        )
        .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(a.json()["type"], "urn:jingteng:error:no-collaboration");
        assert!(
            a.json()["detail"]
                .as_str()
                .unwrap()
                .contains("no active collaboration")
        );
        let list = get(&node, "/api/audiences", Some(tokens.analyst())).await;
        assert_eq!(list.status, StatusCode::OK);
        assert_eq!(list.json()["party"], "retail");

        // A GET-only path answers 405 to a POST, a huge body 413: never a panic.
        let a = call(
            &node,
            "POST",
            "/api/node",
            &[("authorization", &op)],
            Vec::new(),
        )
        .await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
        let a = call(
            &node,
            "POST",
            "/api/audit/verify",
            &[("authorization", &op)],
            vec![b'x'; 1 << 20],
        )
        .await;
        assert!(
            a.status.is_success() || a.status == StatusCode::PAYLOAD_TOO_LARGE,
            "{}",
            a.status
        );
    }

    #[tokio::test]
    async fn the_api_reads_the_catalog_and_the_kept_reports() {
        let (_tmp, node) = node();
        let tokens = dashboard_tokens(&node).unwrap();
        let an = Some(tokens.analyst());

        let n = get(&node, "/api/node", an).await.json();
        assert_eq!(n["party"], "retail");
        assert_eq!(n["collaborations"], json!([]));

        let jobs = get(&node, "/api/jobs", an).await.json();
        assert_eq!(jobs["jobs"][0]["state"], "done");
        assert_eq!(jobs["jobs"][0]["progress"]["run"], "0123456789abcdef");

        let runs = get(&node, "/api/match", an).await.json();
        let run = &runs["runs"][0];
        assert_eq!(run["run"], "0123456789abcdef");
        assert_eq!(run["report"]["records"]["brand"], 100);
        let s = &run["summary"];
        assert_eq!(s["id_types"], json!(["phone", "device"]));
        // Pairs first; each set's base is its smallest party.
        assert_eq!(s["sets"][0]["set"], "retail+brand");
        assert_eq!(s["sets"][0]["base_party"], "brand");
        assert_eq!(s["sets"][0]["rate"], 0.5);
        assert_eq!(
            s["sets"][0]["by_id_type"]["phone"],
            json!({"matched": 45, "rate": 0.45})
        );
        assert_eq!(s["sets"][1]["set"], "social+retail");
        assert_eq!(s["sets"][1]["rate"], 0.5);
        assert_eq!(s["sets"][2]["set"], "social+retail+brand");

        let one = get(&node, "/api/match/0123456789abcdef", an).await.json();
        assert_eq!(one["summary"], *s);
        for (uri, status) in [
            ("/api/match/fedcba9876543210", StatusCode::NOT_FOUND),
            ("/api/match/..%2F..%2Fsecrets", StatusCode::BAD_REQUEST),
            ("/api/match/0123456789ABCDEF", StatusCode::BAD_REQUEST),
            ("/api/audit?limit=0", StatusCode::BAD_REQUEST),
            (
                "/api/audit?limit=99999999999999999999999",
                StatusCode::BAD_REQUEST,
            ),
            ("/assets/..%2Fsrc%2Flib.rs", StatusCode::NOT_FOUND),
        ] {
            let a = get(&node, uri, an).await;
            assert_eq!(a.status, status, "{uri}");
            assert_eq!(
                a.headers[header::CONTENT_TYPE],
                "application/problem+json",
                "{uri}"
            );
        }

        let audit = get(&node, "/api/audit?limit=2", an).await.json();
        assert_eq!(audit["entries"].as_array().unwrap().len(), 2);
        assert_eq!(audit["by_action"]["import"], 2);
        assert_eq!(audit["verify"]["ok"], true);

        let d = get(&node, "/api/datasets", an).await.json();
        let users = &d["datasets"][0];
        assert_eq!(users["name"], "retail/users");
        assert_eq!(users["version"], 2);
        assert_eq!(users["rows"], 410);
        assert_eq!(users["columns"], json!([{"name": "phone", "type": "text"}]));
        assert_eq!(users["versions"][0]["version"], 2);
        assert_eq!(users["versions"][1]["rows"], 400);
    }

    #[tokio::test]
    async fn a_broken_audit_chain_is_shown_not_hidden() {
        let (_tmp, node) = node();
        let tokens = dashboard_tokens(&node).unwrap();
        // Rewrite one audited figure in the catalog's file, as someone editing the
        // database behind the node's back would (the catalog is closed: no WAL left).
        let path = node.dir().join(&node.config().catalog);
        let mut bytes = std::fs::read(&path).unwrap();
        let (from, to) = (br#""rows":400"#, br#""rows":999"#);
        let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
        bytes[at..at + to.len()].copy_from_slice(to);
        std::fs::write(&path, bytes).unwrap();

        let audit = get(&node, "/api/audit", Some(tokens.analyst()))
            .await
            .json();
        assert_eq!(audit["verify"]["ok"], false);
        let error = audit["verify"]["error"].as_str().unwrap();
        assert!(error.contains("content was changed"), "{error}");
        // Verifying from the page says so too, and records that it did.
        let op = format!("Bearer {}", tokens.operator().expose());
        let a = call(
            &node,
            "POST",
            "/api/audit/verify",
            &[("authorization", &op)],
            Vec::new(),
        )
        .await;
        assert_eq!(a.json()["checked"]["ok"], false);
    }
}
