//! `jingteng serve`: the node-to-node API over mutual TLS, and the client side of it.
//!
//! The server accepts only peers whose certificate a signed, active contract in its
//! catalog lists (and its own), knows which party each connection is, and answers
//! versioned endpoints under `/v1/`. Errors are `application/problem+json`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Extension;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use jingteng_psi::{BlindedBatch, Party};
use rand::TryRngCore;
use rustls::ClientConfig;
use rustls::ServerConfig;
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::contract::{Contract, ContractBody, MemberCard};
use crate::netmatch::{self, Run, Runs, lock};
use crate::retry::{Call, Halt, RetryNote, RetryPolicy, call_peer, problem_detail};
use crate::share;
use crate::tls::{self, PinnedClients, PinnedServer};
use crate::{Error, NodeDir, Result, file_err, read_secret};

/// Media type of the node-to-node API, version 1.
pub const API_VERSION: &str = "jingteng/v1";
/// Largest response body a client reads from a peer (a peer cannot exhaust memory).
const MAX_RESPONSE: usize = 16 << 20;

/// The party on the other end of a connection, from its pinned certificate.
#[derive(Debug, Clone)]
struct Peer(String);

#[derive(Clone)]
struct AppState {
    party: String,
    /// Active collaborations: id → contract body.
    contracts: Arc<BTreeMap<String, ContractBody>>,
    /// The node's data directory (handlers that do long work reopen it).
    dir: Arc<std::path::PathBuf>,
    /// Match runs this node hosts (kept on disk too: see `netmatch`).
    runs: Runs,
    /// This node's PSI key per collaboration, loaded (or made) on first use from
    /// `secrets/psi/`, so that a restarted node blinds as before.
    psi: Arc<tokio::sync::Mutex<BTreeMap<String, Arc<Party>>>>,
    /// Runs this node, as a member, is contributing to or has delivered to the host:
    /// (collaboration, run). A host asking again for one of them is answered at once.
    contributing: Arc<std::sync::Mutex<BTreeSet<(String, String)>>>,
    options: ServeOptions,
    halt: Halt,
    /// Contributions stored since the node started (serialises storing, too).
    stored: Arc<tokio::sync::Mutex<usize>>,
    /// Serialises changes to the audiences this node keeps (definitions, versions).
    audiences: Arc<tokio::sync::Mutex<()>>,
    /// Serialises changes to the RTA token lists this node keeps as an owner (not the
    /// lock above: a host delivering holds that one while its activation party sends
    /// the host, as owner, the tokens).
    rta: Arc<tokio::sync::Mutex<()>>,
}

/// How a node serves: retries, and how a host watches its runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// How calls to other members are retried.
    pub retry: RetryPolicy,
    /// How often a host asks again the members that have not delivered a run's
    /// contribution: a member that restarted meanwhile starts over, one that is gone
    /// fails the run (after the retries) naming it. Default 10 s.
    pub watch_interval: Duration,
    /// Tests only: after storing this many contributions, the node halts as if killed:
    /// it answers that request with 503, drops every connection, stops its background
    /// work and `serve` returns. What it wrote to disk stays, as after a crash.
    #[doc(hidden)]
    pub halt_after_contributions: Option<usize>,
    /// How often a host looks for audiences due for their scheduled refresh
    /// (`refresh = "24h"`, docs/audiences.md). Default 30 s.
    pub refresh_tick: Duration,
    /// Tests only: milliseconds added to the clock the refresh scheduler reads, so that
    /// a test can move its time forward.
    #[doc(hidden)]
    pub refresh_clock_skew_ms: Arc<std::sync::atomic::AtomicI64>,
    /// The RTA index this node serves (`jingteng serve --rta-listen`), if any: a token
    /// list or a suppression that arrives updates it at once. Lists are stored either
    /// way. Default: none.
    pub rta: Option<Arc<jingteng_audience::rta::LiveIndex>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            watch_interval: Duration::from_secs(10),
            halt_after_contributions: None,
            refresh_tick: Duration::from_secs(30),
            refresh_clock_skew_ms: Arc::default(),
            rta: None,
        }
    }
}

static WIRE_SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static WIRE_RECEIVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Bytes of request and response bodies this process's node clients have sent and
/// received so far (every node-to-node call goes through one client; HTTP headers and
/// TLS framing not counted): what `jingteng bench network` reports per record.
pub fn wire_bytes() -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    (WIRE_SENT.load(Relaxed), WIRE_RECEIVED.load(Relaxed))
}

/// Media type of a PSI batch on the wire.
pub const PSI_BATCH_TYPE: &str = "application/vnd.jingteng.psi-batch.v1";
/// Media type of a batch a member hands the host to re-blind last and keep.
pub const PSI_KEEP_TYPE: &str = "application/vnd.jingteng.psi-keep.v1";

/// Certificate SHA-256 → party, for this node and every member of its active contracts;
/// and each active collaboration's contract body.
type Pinned = (BTreeMap<String, String>, BTreeMap<String, ContractBody>);

fn pinned_members(node: &NodeDir) -> Result<Pinned> {
    let mut allowed = BTreeMap::new();
    let mut members = BTreeMap::new();
    let own = crate::contract::card(node)?;
    allowed.insert(own.cert_sha256, own.party);
    for (_, text, state) in node.catalog()?.collaborations()? {
        if state != "active" {
            continue;
        }
        let contract: Contract = serde_json::from_str(&text)
            .map_err(|e| Error::Internal(format!("stored contract unreadable: {e}")))?;
        // Checked again: a contract in the catalog is trusted only if it still verifies.
        if !contract.status()?.active {
            continue;
        }
        let body = contract.body()?;
        for m in &body.members {
            allowed.insert(m.cert_sha256.clone(), m.party.clone());
        }
        members.insert(body.collaboration.clone(), body);
    }
    Ok((allowed, members))
}

/// The body of the active (fully signed, verifying) contract of `collaboration` in this
/// node's catalog.
pub(crate) fn active_contract(node: &NodeDir, collaboration: &str) -> Result<ContractBody> {
    let (_, mut contracts) = pinned_members(node)?;
    contracts.remove(collaboration).ok_or_else(|| {
        Error::Contract(format!(
            "no active collaboration {collaboration:?} in this node's catalog (see `jingteng collab status`)"
        ))
    })
}

/// A member's query on a collaboration this node hosts, answered under its rules.
async fn query(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Response {
    let (contract, req) = match host_request::<crate::QueryRequest>(&state, &id, &peer, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    reply(crate::remote::answer(&state.dir, &contract, &peer.0, req).await)
}

/// A member's ready analysis on a collaboration this node hosts.
async fn insight(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Response {
    let (contract, req) = match host_request::<crate::InsightRequest>(&state, &id, &peer, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    reply(crate::remote::answer_insight(&state.dir, &contract, &peer.0, req).await)
}

/// A member's measurement on a collaboration this node hosts.
async fn measure(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Response {
    let (contract, req) = match host_request::<crate::MeasureRequest>(&state, &id, &peer, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    reply(crate::remote::answer_measure(&state.dir, &contract, &peer.0, req).await)
}

/// A member's new audience, on a collaboration this node hosts.
async fn create_audience(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Response {
    let (contract, req) =
        match host_request::<crate::audiences::CreateAudience>(&state, &id, &peer, &body) {
            Ok(x) => x,
            Err(r) => return r,
        };
    reply(crate::audiences::create(&state.dir, &contract, &peer.0, req, &state.audiences).await)
}

/// The audiences of a collaboration this node hosts, for a member.
async fn list_audiences(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Extension(peer): Extension<Peer>,
) -> Response {
    let contract = match host_read(&state, &id, &peer) {
        Ok(c) => c,
        Err(r) => return r,
    };
    reply(crate::audiences::list(&state.dir, &contract))
}

/// One audience of a collaboration this node hosts, for a member.
async fn show_audience(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path((id, name)): axum::extract::Path<(String, String)>,
    Extension(peer): Extension<Peer>,
) -> Response {
    let contract = match host_read(&state, &id, &peer) {
        Ok(c) => c,
        Err(r) => return r,
    };
    reply(crate::audiences::show(&state.dir, &contract, &name))
}

/// A member asks this host to deliver the next version of an audience.
async fn deliver_audience(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path((id, name)): axum::extract::Path<(String, String)>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Response {
    let (contract, req) =
        match host_request::<crate::audiences::DeliverAudience>(&state, &id, &peer, &body) {
            Ok(x) => x,
            Err(r) => return r,
        };
    let node = match NodeDir::open(&state.dir) {
        Ok(n) => n,
        Err(e) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &e.to_string(),
            );
        }
    };
    reply(
        crate::audiences::deliver(
            &node,
            &contract,
            &peer.0,
            &name,
            req,
            state.options.retry,
            &state.halt,
            &state.audiences,
        )
        .await,
    )
}

/// The host of collaboration `id` delivers a version of an audience to this node, its
/// activation party: the rows of this node's own identity table. Only the host the
/// contract names may send it.
async fn activate(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Response {
    let contract = match member_read(&state, &id, &peer) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let host = jingteng_psi::Collaboration::parse(&contract.spec)
        .ok()
        .and_then(|c| c.host().map(str::to_string));
    if host.as_deref() != Some(peer.0.as_str()) {
        return problem(
            StatusCode::FORBIDDEN,
            "not-the-host",
            "only the collaboration's host delivers audiences",
        );
    }
    let batch = match crate::audiences::ActivationBatch::decode(&body) {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "bad-delivery", &e.to_string()),
    };
    let dir = state.dir.clone();
    let body = contract.clone();
    let done = tokio::task::spawn_blocking(move || {
        let node = NodeDir::open(&dir).map_err(|e| crate::remote::internal(&e))?;
        crate::audiences::activate(&node, &body, batch)
    })
    .await;
    let (mut reply, pending) = match done {
        Ok(Ok(x)) => x,
        Ok(Err((status, code, detail))) => return problem(status, code, &detail),
        Err(_) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "writing the delivery failed",
            );
        }
    };
    // The version is written: whatever becomes of the owner's tokens, it stays.
    reply.rta = Some(match pending {
        crate::audiences::RtaPending::Skip(p) => p,
        crate::audiences::RtaPending::Send(owner, msg) => match NodeDir::open(&state.dir) {
            Ok(node) => {
                let _own = if owner == state.party {
                    Some(state.rta.lock().await)
                } else {
                    None
                };
                crate::rta::push(
                    &node,
                    &contract,
                    &owner,
                    &msg,
                    state.options.rta.as_deref(),
                    &state.halt,
                )
                .await
            }
            Err(e) => crate::rta::RtaPush {
                owner,
                pushed: false,
                detail: Some(e.to_string()),
            },
        },
    });
    Json(reply).into_response()
}

/// The activation party of an audience this node defined sends it the device tokens of
/// a delivered version (or a suppression): checked (the sender must be the audience's
/// activation party, this node its owner, the message well formed), stored, and
/// applied to the RTA index this node serves.
async fn receive_tokens(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path((id, audience)): axum::extract::Path<(String, String)>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Response {
    let contract = match member_read(&state, &id, &peer) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let msg = match crate::rta::TokenList::decode(&body) {
        Ok(m) => m,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "bad-tokens", &e.to_string()),
    };
    if msg.header.collaboration != id
        || msg.header.audience != audience
        || !crate::audiences::valid_name(&audience)
    {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad-tokens",
            "the message is about another collaboration or audience than its path",
        );
    }
    let node = match NodeDir::open(&state.dir) {
        Ok(n) => n,
        Err(e) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &e.to_string(),
            );
        }
    };
    if let Err((status, code, detail)) =
        crate::rta::check_sender(&node, &contract, &audience, &peer.0).await
    {
        return problem(status, code, &detail);
    }
    let _guard = state.rta.lock().await;
    let dir = state.dir.clone();
    let live = state.options.rta.clone();
    let from = peer.0.clone();
    let done = tokio::task::spawn_blocking(move || {
        crate::rta::receive_checked(&dir, &msg, &from, live.as_deref())
    })
    .await;
    match done {
        Ok(Ok(reply)) => Json(reply).into_response(),
        Ok(Err((status, code, detail))) => problem(status, code, &detail),
        Err(_) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "storing the token list failed",
        ),
    }
}

/// A running node's check that the caller is a member of the active collaboration
/// `id`: its contract, or the problem to answer.
#[allow(clippy::result_large_err)]
fn member_read(state: &AppState, id: &str, peer: &Peer) -> Result<ContractBody, Response> {
    running(state)?;
    Ok(member_check(state, id, peer)?.clone())
}

/// A member's read of something this node keeps as the host of collaboration `id`.
#[allow(clippy::result_large_err)]
fn host_read(state: &AppState, id: &str, peer: &Peer) -> Result<ContractBody, Response> {
    let contract = member_read(state, id, peer)?;
    host_check(&contract, &state.party)?;
    Ok(contract)
}

/// A member's request to this node as the host of collaboration `id`: the contract and
/// the decoded request, or the problem to answer.
#[allow(clippy::result_large_err)]
fn host_request<T: serde::de::DeserializeOwned>(
    state: &AppState,
    id: &str,
    peer: &Peer,
    body: &[u8],
) -> Result<(ContractBody, T), Response> {
    let contract = host_read(state, id, peer)?;
    let req = serde_json::from_slice(body).map_err(|e| {
        problem(
            StatusCode::BAD_REQUEST,
            "bad-request",
            &format!("not a request this endpoint takes: {e}"),
        )
    })?;
    Ok((contract, req))
}

fn server_config(node: &NodeDir, allowed: BTreeMap<String, String>) -> Result<ServerConfig> {
    let (cert, key) = identity(node)?;
    ServerConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Internal(e.to_string()))?
        .with_client_cert_verifier(Arc::new(PinnedClients { allowed }))
        .with_single_cert(vec![cert], key)
        .map_err(|e| Error::Internal(format!("TLS identity: {e}")))
}

fn identity(
    node: &NodeDir,
) -> Result<(
    rustls_pki_types::CertificateDer<'static>,
    rustls_pki_types::PrivateKeyDer<'static>,
)> {
    let cert_path = node.dir().join(&node.config().tls_cert);
    let pem = std::fs::read_to_string(&cert_path).map_err(|e| file_err(&cert_path, e))?;
    let cert = tls::load_cert(&pem).map_err(|e| file_err(&cert_path, e))?;
    let key_path = node.dir().join(&node.config().tls_key);
    let key = tls::load_key(&read_secret(&key_path)?).map_err(|e| file_err(&key_path, e))?;
    Ok((cert, key))
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/whoami", get(whoami))
        .route(
            "/v1/collaborations/{id}/match",
            axum::routing::post(start_match),
        )
        .route("/v1/collaborations/{id}/match/{run}", get(run_status))
        .route(
            "/v1/collaborations/{id}/match/{run}/contribute",
            axum::routing::post(contribute),
        )
        .route(
            "/v1/collaborations/{id}/match/{run}/result",
            axum::routing::post(receive_result)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_CONTRIBUTION_BYTES)),
        )
        .route(
            "/v1/collaborations/{id}/match/{run}/tables/{table}/{part}",
            axum::routing::post(receive_part)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_PART_BYTES)),
        )
        .route(
            "/v1/collaborations/{id}/insight",
            axum::routing::post(insight).layer(axum::extract::DefaultBodyLimit::max(1 << 20)),
        )
        .route(
            "/v1/collaborations/{id}/measure",
            axum::routing::post(measure).layer(axum::extract::DefaultBodyLimit::max(1 << 20)),
        )
        .route(
            "/v1/collaborations/{id}/query",
            axum::routing::post(query).layer(axum::extract::DefaultBodyLimit::max(1 << 20)),
        )
        .route(
            "/v1/collaborations/{id}/audiences",
            get(list_audiences)
                .post(create_audience)
                .layer(axum::extract::DefaultBodyLimit::max(1 << 20)),
        )
        .route(
            "/v1/collaborations/{id}/audiences/{name}",
            get(show_audience),
        )
        .route(
            "/v1/collaborations/{id}/audiences/{name}/deliver",
            axum::routing::post(deliver_audience)
                .layer(axum::extract::DefaultBodyLimit::max(1 << 20)),
        )
        .route(
            "/v1/collaborations/{id}/activate",
            axum::routing::post(activate).layer(axum::extract::DefaultBodyLimit::max(
                crate::audiences::MAX_ACTIVATION_BYTES,
            )),
        )
        .route(
            "/v1/collaborations/{id}/rta/{audience}",
            axum::routing::post(receive_tokens).layer(axum::extract::DefaultBodyLimit::max(
                crate::rta::MAX_RTA_TOKENS_BYTES,
            )),
        )
        .route(
            "/v1/collaborations/{id}/match/{run}/failed",
            axum::routing::post(receive_failure),
        )
        .route(
            "/v1/collaborations/{id}/match/{run}/keep/{attempt}",
            axum::routing::post(keep).layer(axum::extract::DefaultBodyLimit::max(MAX_KEEP_BYTES)),
        )
        .route(
            "/v1/collaborations/{id}/psi/reblind",
            axum::routing::post(reblind)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_BATCH_BYTES)),
        )
        .fallback(not_found)
        .with_state(state)
}

async fn health(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "party": state.party,
        "api": API_VERSION,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn whoami(Extension(peer): Extension<Peer>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "you": peer.0 }))
}

/// Largest PSI batch body: the header and `MAX_BATCH` points.
const MAX_BATCH_BYTES: usize = 8 + 32 * jingteng_psi::MAX_BATCH;

/// Re-blinds a member's batch with this node's key for the collaboration, keeping the
/// order. Only members of the active collaboration may ask; a malformed batch or an
/// invalid point is a 400 naming what is wrong.
async fn reblind(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Response {
    if let Err(r) = running(&state) {
        return r;
    }
    if let Err(r) = member_check(&state, &id, &peer) {
        return r;
    }
    let batch = match BlindedBatch::decode(&body) {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "bad-batch", &e.to_string()),
    };
    let party = match psi_key(&state, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    // The curve work runs off the async workers.
    match tokio::task::spawn_blocking(move || party.reblind(&batch)).await {
        Ok(Ok(out)) => ([(header::CONTENT_TYPE, PSI_BATCH_TYPE)], out.encode()).into_response(),
        Ok(Err(e)) => problem(StatusCode::BAD_REQUEST, "bad-batch", &e.to_string()),
        Err(_) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "re-blinding failed",
        ),
    }
}

/// Largest batch a member hands the host to keep: the header, a channel name, and
/// `MAX_BATCH` points with their rows (at most 5 bytes each).
const MAX_KEEP_BYTES: usize = 16 + jingteng_psi::MAX_CHANNEL_NAME + 37 * jingteng_psi::MAX_BATCH;

/// A member hands the host (this node) a batch of its points, re-blinded by every other
/// participant of the channel, in row order with their rows: the host re-blinds them
/// last, keeps their join keys (on disk, atomically, before it answers) and returns
/// nothing. Only the spec's host takes them, only for a run it hosts that still takes
/// the member's contribution, only on a channel both take part in; a malformed batch
/// or an invalid point is a 400 naming what is wrong.
async fn keep(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path((id, run, attempt)): axum::extract::Path<(String, String, String)>,
    Extension(peer): Extension<Peer>,
    body: Bytes,
) -> Response {
    let contract = match member_read(&state, &id, &peer) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = host_check(&contract, &state.party) {
        return r;
    }
    if !netmatch::valid_run_id(&run) || !netmatch::valid_run_id(&attempt) {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad-run",
            "not a run or attempt id",
        );
    }
    let names = party_names(&contract);
    let (Some(index), Some(host)) = (
        names.iter().position(|n| *n == peer.0),
        names.iter().position(|n| *n == state.party),
    ) else {
        return problem(StatusCode::FORBIDDEN, "not-a-member", "unknown party");
    };
    let batch = match jingteng_psi::KeepBatch::decode(&body) {
        Ok(b) => b,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "bad-batch", &e.to_string()),
    };
    let channels = match jingteng_psi::Collaboration::parse(&contract.spec) {
        Ok(c) => jingteng_match::channels(&c),
        Err(e) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &e.to_string(),
            );
        }
    };
    let Some(channel) = channels.iter().position(|(name, parties)| {
        *name == batch.channel && parties.contains(&index) && parties.contains(&host)
    }) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "bad-channel",
            &format!(
                "{:?} is not a channel that {} and the host both take part in",
                batch.channel, peer.0
            ),
        );
    };
    {
        let mut runs = lock(&state.runs);
        if let Err(r) = accepting(runs.get(&run), &id, index) {
            return r;
        }
        // Bounded: a member cannot have the host keep more than a contribution holds.
        let Some(r) = runs.get_mut(&run) else {
            return problem(StatusCode::NOT_FOUND, "no-run", "no such match run");
        };
        r.kept.insert(
            (index, attempt.clone(), channel, batch.start),
            batch.rows.len() as u64,
        );
        let total: u64 = r
            .kept
            .iter()
            .filter(|((p, a, _, _), _)| *p == index && *a == attempt)
            .map(|(_, n)| n)
            .sum();
        if total > netmatch::MAX_KEYS {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-many-keys",
                &format!("more than {} keys in one contribution", netmatch::MAX_KEYS),
            );
        }
    }
    let party = match psi_key(&state, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let dir = state.dir.clone();
    // The curve work and the write run off the async workers.
    let kept = tokio::task::spawn_blocking(move || {
        let keys = party
            .join_keys(&batch.points)
            .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        let keyed: Vec<(u32, [u8; 16])> = batch.rows.iter().copied().zip(keys).collect();
        netmatch::store_kept(&dir, &run, index, &attempt, channel, batch.start, &keyed)
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    })
    .await;
    match kept {
        Ok(Ok(())) => StatusCode::ACCEPTED.into_response(),
        Ok(Err((StatusCode::BAD_REQUEST, e))) => problem(StatusCode::BAD_REQUEST, "bad-batch", &e),
        Ok(Err((status, e))) => problem(status, "internal", &format!("keeping the keys: {e}")),
        Err(_) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "keeping the keys failed",
        ),
    }
}

/// The members of active collaboration `id`, if the caller is one of them.
#[allow(clippy::result_large_err)]
fn member_check<'a>(
    state: &'a AppState,
    id: &str,
    peer: &Peer,
) -> Result<&'a ContractBody, Response> {
    let Some(body) = state.contracts.get(id) else {
        return Err(problem(
            StatusCode::NOT_FOUND,
            "no-collaboration",
            "no active collaboration with this id",
        ));
    };
    if !body.members.iter().any(|m| m.party == peer.0) {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "not-a-member",
            "the caller is not a member of this collaboration",
        ));
    }
    Ok(body)
}

/// This node's PSI key for collaboration `id`: from `secrets/psi/`, made there on
/// first use.
#[allow(clippy::result_large_err)]
async fn psi_key(state: &AppState, id: &str) -> Result<Arc<Party>, Response> {
    let mut keys = state.psi.lock().await;
    if let Some(p) = keys.get(id) {
        return Ok(p.clone());
    }
    let made = NodeDir::open(&state.dir).and_then(|node| netmatch::psi_key(&node, id));
    match made {
        Ok(p) => {
            let p = Arc::new(p);
            keys.insert(id.to_string(), p.clone());
            Ok(p)
        }
        Err(e) => Err(problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &format!("this node's key for the collaboration: {e}"),
        )),
    }
}

/// 503 while the node halts.
#[allow(clippy::result_large_err)]
fn running(state: &AppState) -> Result<(), Response> {
    if state.halt.is_set() {
        return Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "this node is stopping",
        ));
    }
    Ok(())
}

/// Whether `party` is the host the contract's spec names.
#[allow(clippy::result_large_err)]
fn host_check(body: &ContractBody, party: &str) -> Result<(), Response> {
    let host = jingteng_psi::Collaboration::parse(&body.spec)
        .ok()
        .and_then(|c| c.host().map(str::to_string));
    match host {
        Some(h) if h == party => Ok(()),
        Some(h) => Err(problem(
            StatusCode::FORBIDDEN,
            "not-the-host",
            &format!("the contract names {h:?} as host"),
        )),
        None => Err(problem(
            StatusCode::FORBIDDEN,
            "no-host",
            "the contract's spec names no host (collaboration.host); no networked match can run",
        )),
    }
}

fn party_names(body: &ContractBody) -> Vec<String> {
    body.members.iter().map(|m| m.party.clone()).collect()
}

/// Starts a match this node hosts: records it as a job, then asks every member to
/// contribute. Only the node's own operator (its own certificate) may start one.
async fn start_match(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Extension(peer): Extension<Peer>,
) -> Response {
    if let Err(r) = running(&state) {
        return r;
    }
    let body = match member_check(&state, &id, &peer) {
        Ok(b) => b.clone(),
        Err(r) => return r,
    };
    if peer.0 != state.party {
        return problem(
            StatusCode::FORBIDDEN,
            "not-the-host",
            "only this node's operator starts a match it hosts",
        );
    }
    if let Err(r) = host_check(&body, &state.party) {
        return r;
    }
    let mut raw = [0u8; 8];
    if rand::rngs::OsRng.try_fill_bytes(&mut raw).is_err() {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no randomness for a run id",
        );
    }
    let run = crate::hex(&raw);
    // The run is a job in the host's catalog: running until linked or failed.
    let job = NodeDir::open(&state.dir).and_then(|node| {
        Ok(node.catalog()?.start_job(
            "match",
            Some(&id),
            &serde_json::json!({ "run": run, "received": [] }),
        )?)
    });
    let job = match job {
        Ok(job) => job,
        Err(e) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &e.to_string(),
            );
        }
    };
    lock(&state.runs).insert(
        run.clone(),
        Run {
            collaboration: id.clone(),
            started_ms: netmatch::now_ms(),
            job: Some(job),
            attempts: 1,
            ..Run::default()
        },
    );
    tokio::spawn(drive_run(state.clone(), run.clone(), body));
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "run": run })),
    )
        .into_response()
}

/// The host's side of a run until every contribution is in: asks each member that has
/// not delivered to contribute (retrying one that does not answer), then again every
/// `watch_interval`, so that a member that restarted starts over and one that is gone
/// fails the run, named, instead of leaving it waiting for ever.
async fn drive_run(state: AppState, run: String, body: ContractBody) {
    let node = match NodeDir::open(&state.dir) {
        Ok(n) => Arc::new(n),
        Err(e) => {
            fail_run(&state, &run, format!("node directory: {e}"));
            return;
        }
    };
    let id = body.collaboration.clone();
    let names = party_names(&body);
    loop {
        let missing: Vec<MemberCard> = {
            let runs = lock(&state.runs);
            let Some(r) = runs.get(&run) else { return };
            if r.is_over() || r.linking || state.halt.is_set() {
                return;
            }
            body.members
                .iter()
                .enumerate()
                .filter(|(i, _)| !r.parts.contains_key(i))
                .map(|(_, m)| m.clone())
                .collect()
        };
        let mut asks = JoinSet::new();
        for m in missing {
            let (state, node, run, names) =
                (state.clone(), node.clone(), run.clone(), names.clone());
            let path = format!("/v1/collaborations/{id}/match/{run}/contribute");
            asks.spawn(async move {
                let call = Call {
                    method: hyper::Method::POST,
                    path: &path,
                    body: Some(("application/json", Bytes::new())),
                };
                let note = |n: Option<&RetryNote>| {
                    let mut runs = lock(&state.runs);
                    if let Some(r) = runs.get_mut(&run)
                        && !r.is_over()
                    {
                        r.retrying = n.map(ToString::to_string);
                        r.save_progress(&state.dir, &run, &names);
                    }
                };
                match call_peer(&node, &m, &call, state.options.retry, &state.halt, &note).await {
                    Ok((202, _)) | Err(Error::Stopped) => None,
                    Ok((status, body)) => Some(format!(
                        "{} refused to contribute ({status}): {}",
                        m.party,
                        problem_detail(&body)
                    )),
                    Err(e) => Some(format!("asking {} to contribute: {e}", m.party)),
                }
            });
        }
        while let Some(done) = asks.join_next().await {
            if let Ok(Some(e)) = done {
                fail_run(&state, &run, e);
            }
        }
        if !state.halt.sleep(state.options.watch_interval).await {
            return;
        }
    }
}

/// Fails a run (the first reason stands) and closes its job.
fn fail_run(state: &AppState, run: &str, error: String) {
    if let Some(r) = lock(&state.runs).get_mut(run)
        && !r.is_over()
    {
        r.fail(&state.dir, error);
    }
}

/// A host asks this member to contribute: runs its side in the background and sends
/// the result (or the failure) to the host, retrying. Asking again for a run this
/// member is working on, or has delivered, changes nothing.
async fn contribute(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path((id, run)): axum::extract::Path<(String, String)>,
    Extension(peer): Extension<Peer>,
) -> Response {
    if let Err(r) = running(&state) {
        return r;
    }
    let body = match member_check(&state, &id, &peer) {
        Ok(b) => b.clone(),
        Err(r) => return r,
    };
    // Join keys go only to the host the signed spec names.
    if let Err(r) = host_check(&body, &peer.0) {
        return r;
    }
    let Some(host) = body.members.iter().find(|m| m.party == peer.0).cloned() else {
        return problem(StatusCode::FORBIDDEN, "not-a-member", "unknown host");
    };
    if !netmatch::valid_run_id(&run) {
        return problem(StatusCode::BAD_REQUEST, "bad-run", "not a run id");
    }
    let me = match psi_key(&state, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let key = (id.clone(), run.clone());
    if !lock(&state.contributing).insert(key.clone()) {
        return StatusCode::ACCEPTED.into_response();
    }
    tokio::spawn(async move {
        let delivered = contribute_and_deliver(&state, &body, &host, &run, me).await;
        if !delivered {
            // The host asks again (it re-asks members that have not delivered).
            lock(&state.contributing).remove(&key);
        }
    });
    StatusCode::ACCEPTED.into_response()
}

/// This member's contribution to run `run`, sent to `host`; whether the host has it.
async fn contribute_and_deliver(
    state: &AppState,
    body: &ContractBody,
    host: &MemberCard,
    run: &str,
    me: Arc<Party>,
) -> bool {
    let Ok(node) = NodeDir::open(&state.dir) else {
        return false;
    };
    let node = Arc::new(node);
    let id = body.collaboration.clone();
    let work = {
        let (node, body, halt) = (node.clone(), body.clone(), state.halt.clone());
        let (retry, runtime) = (state.options.retry, tokio::runtime::Handle::current());
        let (host, run) = (host.clone(), run.to_string());
        tokio::task::spawn_blocking(move || -> Result<Vec<u8>, (String, bool)> {
            let collab = jingteng_psi::Collaboration::parse(&body.spec)
                .map_err(|e| (e.to_string(), false))?;
            let own = |e: Error| (e.to_string(), false);
            let identity_table = collab
                .parties()
                .iter()
                .find(|p| p.name == node.config().party)
                .map(|p| p.identity.name.clone())
                .ok_or_else(|| {
                    own(Error::Contract(
                        "this node is not a party of the spec".into(),
                    ))
                })?;
            // One version of the identity table numbers both the join keys and the
            // shared rows; the records this node's party left out (`jingteng forget`,
            // the opt-out flag) are not in it: never blinded, never shared.
            let identity = share::latest_import(&node, &identity_table).map_err(own)?;
            let work = contribution_work_dir(&node, &run);
            let _cleanup = RemoveOnDrop(work.clone());
            let (identity, left_out) =
                crate::rights::identity_for_match(&node, &collab, &identity, &work).map_err(own)?;
            // This attempt names the batches handed to the host to keep: a restarted
            // contribution's batches never mix with an earlier one's.
            let mut raw = [0u8; 8];
            rand::rngs::OsRng
                .try_fill_bytes(&mut raw)
                .map_err(|e| (format!("the operating system's RNG failed: {e}"), false))?;
            let attempt = crate::hex(&raw);
            let names = party_names(&body);
            let keeper = names
                .iter()
                .position(|n| *n == host.party)
                .filter(|_| host.party != node.config().party)
                .map(|k| (k, run.as_str(), attempt.as_str()));
            let peers = netmatch::RemotePeers {
                node: &node,
                collaboration: collab.id(),
                members: &body.members,
                keeper,
                runtime: runtime.clone(),
                retry,
                halt: &halt,
                gave_up: std::sync::Mutex::default(),
                failure: std::sync::Mutex::default(),
            };
            let part = netmatch::contribute_here(&node, &collab, &me, &peers, identity.clone());
            // Failing because the host itself was away is not reported: the host,
            // once back, asks again.
            let host_away = lock(&peers.gave_up).contains(&host.party) || halt.is_set();
            let part = part.map_err(|e| (e.to_string(), host_away))?;
            // Then the tables, part by part, before the contribution that announces them.
            let mut host_gone = false;
            let now = netmatch::now_ms() / 1000;
            let mut send = |table: &str, k: u32, bytes: Vec<u8>| -> Result<()> {
                let path = format!(
                    "/v1/collaborations/{}/match/{run}/tables/{table}/{k}",
                    collab.id()
                );
                let call = Call {
                    method: hyper::Method::POST,
                    path: &path,
                    body: Some((share::ARROW_STREAM_TYPE, bytes.into())),
                };
                let answer =
                    runtime.block_on(call_peer(&node, &host, &call, retry, &halt, &|_| {}));
                match answer {
                    Ok((202, _)) => Ok(()),
                    Ok((status, body)) => Err(Error::Peer {
                        addr: host.endpoint.clone(),
                        message: format!(
                            "the host refused part {k} of {table} ({status}): {}",
                            problem_detail(&body)
                        ),
                    }),
                    Err(e) => {
                        host_gone = true;
                        Err(e)
                    }
                }
            };
            let tables = share::share_tables(&node, &collab, &identity, &left_out, now, &mut send);
            let tables = tables.map_err(|e| (e.to_string(), host_gone || halt.is_set()))?;
            netmatch::encode_contribution(&part, &tables, Some(&attempt)).map_err(own)
        })
        .await
    };
    let (path, ctype, payload) = match work {
        Ok(Ok(bytes)) => (
            format!("/v1/collaborations/{id}/match/{run}/result"),
            "application/vnd.jingteng.contribution.v1",
            bytes,
        ),
        Ok(Err((_, true))) => return false,
        Ok(Err((e, false))) => (
            format!("/v1/collaborations/{id}/match/{run}/failed"),
            "text/plain",
            e.into_bytes(),
        ),
        Err(_) => (
            format!("/v1/collaborations/{id}/match/{run}/failed"),
            "text/plain",
            b"contribution crashed".to_vec(),
        ),
    };
    let call = Call {
        method: hyper::Method::POST,
        path: &path,
        body: Some((ctype, payload.into())),
    };
    let answer = call_peer(
        &node,
        host,
        &call,
        state.options.retry,
        &state.halt,
        &|_| {},
    )
    .await;
    // 409: the host already has this party's contribution (an earlier delivery whose
    // answer was lost) or the run is over.
    matches!(answer, Ok((202 | 409, _))) && path.ends_with("/result")
}

/// Where a member prepares its contribution to a run (the identity table without the
/// records it leaves out): `contrib/RUN/`, mode 0700, removed when it is over.
fn contribution_work_dir(node: &NodeDir, run: &str) -> std::path::PathBuf {
    node.dir().join("contrib").join(run)
}

/// Removes a folder when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Largest contribution a member may send (about 50 M keys).
const MAX_CONTRIBUTION_BYTES: usize = 1 << 30;

/// Whether run `r` (of collaboration `id`) still takes party `index`'s contribution
/// and shared tables: `404` for no such run, `409` when that party already
/// contributed or the run is over.
#[allow(clippy::result_large_err)]
fn accepting(r: Option<&Run>, id: &str, index: usize) -> Result<(), Response> {
    let Some(r) = r.filter(|r| r.collaboration == id) else {
        return Err(problem(
            StatusCode::NOT_FOUND,
            "no-run",
            "no such match run",
        ));
    };
    if r.is_over() || r.linking || r.parts.contains_key(&index) {
        return Err(problem(
            StatusCode::CONFLICT,
            "duplicate",
            "this party already contributed, or the run is over",
        ));
    }
    Ok(())
}

/// Largest part of a shared table (262,144 rows of a few hundred bytes each, at most).
const MAX_PART_BYTES: usize = 256 << 20;

/// A part of a table a member shares for the joined view of a run this node hosts:
/// checked against the spec (the party's own table, exactly its declared columns, an
/// Arrow IPC stream that decodes) and kept atomically before it is acknowledged.
async fn receive_part(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path((id, run, table, part)): axum::extract::Path<(String, String, String, u32)>,
    Extension(peer): Extension<Peer>,
    bytes: Bytes,
) -> Response {
    if let Err(r) = running(&state) {
        return r;
    }
    let body = match member_check(&state, &id, &peer) {
        Ok(b) => b.clone(),
        Err(r) => return r,
    };
    let names = party_names(&body);
    let Some(index) = names.iter().position(|n| *n == peer.0) else {
        return problem(StatusCode::FORBIDDEN, "not-a-member", "unknown party");
    };
    let collab = match jingteng_psi::Collaboration::parse(&body.spec) {
        Ok(c) => c,
        Err(e) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &e.to_string(),
            );
        }
    };
    let schema = match share::expected_schema(&collab, &peer.0, &table) {
        Some(schema) if part < share::MAX_PARTS => schema,
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad-table",
                &format!(
                    "{}.{table} part {part} is not a table of yours in the spec",
                    peer.0
                ),
            );
        }
    };
    if let Err(r) = accepting(lock(&state.runs).get(&run), &id, index) {
        return r;
    }
    let path = share::part_path(&netmatch::run_dir(&state.dir, &run), index, &table, part);
    let kept = tokio::task::spawn_blocking(move || {
        share::check_part(&schema, &bytes).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        let parent = path.parent().unwrap_or(&path);
        crate::private_dir(parent)
            .and_then(|()| crate::write_atomic(&path, &bytes))
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
    })
    .await;
    match kept {
        Ok(Ok(())) => StatusCode::ACCEPTED.into_response(),
        Ok(Err((StatusCode::BAD_REQUEST, e))) => problem(
            StatusCode::BAD_REQUEST,
            "bad-part",
            &format!("{}.{table} part {part}: {e}", peer.0),
        ),
        Ok(Err((status, e))) => problem(status, "internal", &format!("keeping the part: {e}")),
        Err(_) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "keeping the part failed",
        ),
    }
}

/// A member's contribution to a run this node hosts: kept on disk (atomically) before
/// it is acknowledged; when all are in, the host links.
async fn receive_result(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path((id, run)): axum::extract::Path<(String, String)>,
    Extension(peer): Extension<Peer>,
    bytes: Bytes,
) -> Response {
    if let Err(r) = running(&state) {
        return r;
    }
    let body = match member_check(&state, &id, &peer) {
        Ok(b) => b.clone(),
        Err(r) => return r,
    };
    let names = party_names(&body);
    let Some(index) = names.iter().position(|n| *n == peer.0) else {
        return problem(StatusCode::FORBIDDEN, "not-a-member", "unknown party");
    };
    let (mut part, sent, attempt) = match netmatch::decode_received(&bytes) {
        Ok(r) if r.part.party == index => (r.part, r.tables, r.attempt),
        Ok(_) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad-contribution",
                "a party may only contribute for itself",
            );
        }
        Err(e) => return problem(StatusCode::BAD_REQUEST, "bad-contribution", &e),
    };
    // Every table the spec gives this party must have arrived, whole.
    if let Err(e) = jingteng_psi::Collaboration::parse(&body.spec)
        .map_err(|e| Error::Contract(e.to_string()))
        .and_then(|collab| {
            share::check_sent(&netmatch::run_dir(&state.dir, &run), &collab, index, &sent)
        })
    {
        return problem(StatusCode::BAD_REQUEST, "tables-missing", &e.to_string());
    }
    if let Err(r) = accepting(lock(&state.runs).get(&run), &id, index) {
        return r;
    }
    // The join keys this host kept for the member's batches join the contribution,
    // which is then kept whole (and re-encoded): exactly the batches it announced.
    let mut bytes = bytes.to_vec();
    if let Some(attempt) = attempt.filter(|_| !part.kept.is_empty()) {
        let (dir, run2, spec) = (state.dir.clone(), run.clone(), body.spec.clone());
        let merged = tokio::task::spawn_blocking(move || {
            let collab = jingteng_psi::Collaboration::parse(&spec).map_err(|e| e.to_string())?;
            let channels: Vec<String> = jingteng_match::channels(&collab)
                .into_iter()
                .map(|(name, _)| name)
                .collect();
            let kept = netmatch::load_kept(&dir, &run2, index, &attempt, &channels)
                .map_err(|e| e.to_string())?;
            part.merge_kept(kept).map_err(|e| e.to_string())?;
            netmatch::encode_contribution(&part, &sent, None)
                .map(|b| (part, b))
                .map_err(|e| e.to_string())
        })
        .await;
        match merged {
            Ok(Ok((p, b))) => {
                part = p;
                bytes = b;
            }
            Ok(Err(e)) => return problem(StatusCode::BAD_REQUEST, "keys-missing", &e),
            Err(_) => {
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "merging the kept keys failed",
                );
            }
        }
    }
    // Kept before it is acknowledged: a host that dies after this still has it.
    {
        let mut stored = state.stored.lock().await;
        if let Err(r) = running(&state) {
            return r;
        }
        let (dir, run2) = (state.dir.clone(), run.clone());
        let kept = tokio::task::spawn_blocking(move || {
            netmatch::store_contribution(&dir, &run2, index, &bytes)
        })
        .await;
        match kept {
            Ok(Ok(())) => netmatch::discard_kept(&state.dir, &run, index),
            Ok(Err(e)) => {
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    &format!("keeping the contribution: {e}"),
                );
            }
            Err(_) => {
                return problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "keeping the contribution failed",
                );
            }
        }
        *stored += 1;
        if state.options.halt_after_contributions == Some(*stored) {
            state.halt.set();
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "stopping",
                "this node is stopping",
            );
        }
    }
    let mut runs = lock(&state.runs);
    if let Err(r) = accepting(runs.get(&run), &id, index) {
        return r;
    }
    let Some(r) = runs.get_mut(&run) else {
        return problem(StatusCode::NOT_FOUND, "no-run", "no such match run");
    };
    r.parts.insert(index, part);
    r.kept.retain(|(p, ..), _| *p != index);
    r.save_progress(&state.dir, &run, &names);
    if r.parts.len() == names.len() {
        let parts: Vec<_> = std::mem::take(&mut r.parts).into_values().collect();
        r.linking = true;
        let elapsed = r.elapsed();
        drop(runs);
        spawn_link(&state, run, body, parts, elapsed);
    }
    StatusCode::ACCEPTED.into_response()
}

/// Links a run whose contributions are all in, keeps the report (atomically), audits
/// the match and closes the job; then drops the contributions.
fn spawn_link(
    state: &AppState,
    run: String,
    body: ContractBody,
    parts: Vec<jingteng_match::PartyContribution>,
    elapsed: Duration,
) {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let names = party_names(&body);
        let outcome = jingteng_psi::Collaboration::parse(&body.spec)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                let (report, linked) =
                    jingteng_match::link_parts(&c, parts, elapsed).map_err(|e| e.to_string())?;
                // The joined view: every member's shared rows under their person ids.
                let sent = netmatch::load_sent(&state.dir, &run, names.len())
                    .map_err(|e| e.to_string())?;
                let shared = share::shared_tables(&netmatch::run_dir(&state.dir, &run), &c, &sent)
                    .map_err(|e| e.to_string())?;
                jingteng_engine::view::build_from_shared(
                    &crate::view_dir(&state.dir, c.id()),
                    &c,
                    &run,
                    report.clone(),
                    &linked,
                    &shared,
                )
                .map_err(|e| format!("building the joined view: {e}"))?;
                Ok(report)
            })
            .and_then(|report| {
                if state.halt.is_set() {
                    return Err(String::new());
                }
                netmatch::store_report(&state.dir, &run, &report)
                    .map_err(|e| format!("keeping the report: {e}"))?;
                Ok(report)
            });
        if state.halt.is_set() {
            return;
        }
        if let Ok(report) = &outcome {
            audit_match(&state.dir, &body.collaboration, &run, &names, report);
        }
        let mut runs = lock(&state.runs);
        if let Some(r) = runs.get_mut(&run) {
            r.linking = false;
            match outcome {
                Ok(report) => {
                    r.retrying = None;
                    r.close_job(&state.dir, None);
                    r.report = Some(report);
                    netmatch::discard_contributions(&state.dir, &run, names.len());
                }
                Err(e) => r.fail(&state.dir, e),
            }
        }
    });
}

/// The audit entry of a linked match (counts only), once per run.
fn audit_match(
    dir: &std::path::Path,
    id: &str,
    run: &str,
    names: &[String],
    report: &jingteng_match::MatchReport,
) {
    let Ok(node) = NodeDir::open(dir) else { return };
    let Ok(mut catalog) = node.catalog() else {
        return;
    };
    let audited = catalog.audit_entries().is_ok_and(|entries| {
        entries.iter().any(|e| {
            e.action == "match"
                && serde_json::from_str::<serde_json::Value>(&e.details)
                    .is_ok_and(|d| d["run"] == run)
        })
    });
    if audited {
        return;
    }
    let matched: BTreeMap<&String, u64> =
        report.overlap.iter().map(|(k, v)| (k, v.matched)).collect();
    let _ = catalog.audit(
        &node.config().party,
        "match",
        id,
        &serde_json::json!({"run": run, "parties": names, "matched": matched}),
    );
}

/// Takes up the runs in the catalog when the node starts: finished ones answer their
/// status again; unfinished ones resume from what was kept — linked if every
/// contribution is in, else the members that have not delivered are asked again.
fn resume_runs(state: &AppState, node: &NodeDir) -> Result<()> {
    let mut catalog = node.catalog()?;
    let dir = node.dir();
    for job in catalog.jobs()?.into_iter().rev() {
        if job.kind != "match" {
            continue;
        }
        let progress: serde_json::Value = serde_json::from_str(&job.progress).unwrap_or_default();
        let Some(run) = progress["run"]
            .as_str()
            .filter(|r| netmatch::valid_run_id(r))
            .map(str::to_string)
        else {
            continue;
        };
        let Some(id) = job.collaboration.clone() else {
            continue;
        };
        let mut r = Run {
            collaboration: id.clone(),
            started_ms: job.created_ms,
            attempts: job.attempts,
            ..Run::default()
        };
        match job.state.as_str() {
            "done" => {
                r.report = netmatch::load_report(dir, &run).ok().flatten();
                if r.report.is_none() {
                    r.error = Some(format!(
                        "done, but its report is missing from {}",
                        netmatch::run_dir(dir, &run).display()
                    ));
                }
            }
            "failed" => {
                r.error = Some(job.error.clone().unwrap_or_else(|| "failed".into()));
            }
            _ => {
                r.job = Some(job.id);
                r.attempts = catalog.resume_job(job.id)?;
                let Some(body) = state.contracts.get(&id).cloned() else {
                    r.fail(dir, "the collaboration is no longer active".into());
                    lock(&state.runs).insert(run, r);
                    continue;
                };
                let names = party_names(&body);
                if let Some(report) = netmatch::load_report(dir, &run)? {
                    // Linked, but the job was not closed before the node stopped.
                    audit_match(dir, &id, &run, &names, &report);
                    r.close_job(dir, None);
                    r.report = Some(report);
                    netmatch::discard_contributions(dir, &run, names.len());
                    lock(&state.runs).insert(run, r);
                    continue;
                }
                match netmatch::load_contributions(dir, &run, names.len()) {
                    Ok(parts) => r.parts = parts,
                    Err(e) => {
                        r.fail(dir, format!("resuming: {e}"));
                        lock(&state.runs).insert(run, r);
                        continue;
                    }
                }
                r.save_progress(dir, &run, &names);
                if r.parts.len() == names.len() {
                    let parts: Vec<_> = std::mem::take(&mut r.parts).into_values().collect();
                    r.linking = true;
                    let elapsed = r.elapsed();
                    lock(&state.runs).insert(run.clone(), r);
                    spawn_link(state, run, body, parts, elapsed);
                } else {
                    lock(&state.runs).insert(run.clone(), r);
                    tokio::spawn(drive_run(state.clone(), run, body));
                }
                continue;
            }
        }
        lock(&state.runs).insert(run, r);
    }
    Ok(())
}

/// A member reports that its contribution failed: the run fails with its reason.
async fn receive_failure(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path((id, run)): axum::extract::Path<(String, String)>,
    Extension(peer): Extension<Peer>,
    bytes: Bytes,
) -> Response {
    if let Err(r) = running(&state) {
        return r;
    }
    if let Err(r) = member_check(&state, &id, &peer) {
        return r;
    }
    let message: String = String::from_utf8_lossy(&bytes)
        .chars()
        .take(2_000)
        .collect();
    let known = lock(&state.runs)
        .get(&run)
        .is_some_and(|r| r.collaboration == id);
    if known {
        fail_run(&state, &run, format!("{}: {message}", peer.0));
    }
    StatusCode::ACCEPTED.into_response()
}

/// A run's state and, once done, its report: for every member of the collaboration.
async fn run_status(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path((id, run)): axum::extract::Path<(String, String)>,
    Extension(peer): Extension<Peer>,
) -> Response {
    let body = match member_check(&state, &id, &peer) {
        Ok(b) => b.clone(),
        Err(r) => return r,
    };
    let runs = lock(&state.runs);
    match runs.get(&run).filter(|r| r.collaboration == id) {
        Some(r) => Json(r.status(&party_names(&body))).into_response(),
        None => problem(StatusCode::NOT_FOUND, "no-run", "no such match run"),
    }
}

async fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not-found",
        "no such endpoint in API v1",
    )
}

/// A handler's JSON answer, or its problem document.
fn reply<T: serde::Serialize>(result: std::result::Result<T, crate::remote::Problem>) -> Response {
    match result {
        Ok(reply) => Json(reply).into_response(),
        Err((status, code, detail)) => problem(status, code, &detail),
    }
}

/// An `application/problem+json` response with a stable `type` (the node API's and the
/// dashboard's errors).
pub(crate) fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": format!("urn:jingteng:error:{code}"),
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// Serves the node on `listener` until `shutdown` completes, then stops accepting and
/// gives open connections up to five seconds to finish. Match runs this node hosts
/// that were left unfinished (the node stopped or crashed) are taken up again first.
pub async fn serve(
    node: &NodeDir,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    serve_with(node, listener, shutdown, ServeOptions::default()).await
}

/// [`serve`] with explicit options.
pub async fn serve_with(
    node: &NodeDir,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    options: ServeOptions,
) -> Result<()> {
    let (allowed, contracts) = pinned_members(node)?;
    let acceptor = TlsAcceptor::from(Arc::new(server_config(node, allowed.clone())?));
    let halt = Halt::default();
    let state = AppState {
        party: node.config().party.clone(),
        contracts: Arc::new(contracts),
        dir: Arc::new(node.dir().to_path_buf()),
        runs: Runs::default(),
        psi: Arc::default(),
        contributing: Arc::default(),
        options,
        halt: halt.clone(),
        stored: Arc::default(),
        audiences: Arc::default(),
        rta: Arc::default(),
    };
    resume_runs(&state, node)?;
    // The web dashboard, when node.toml sets its address (docs/dashboard.md).
    let dashboard = match crate::dashboard::spawn_from_config(node, halt.clone()).await {
        Ok(d) => d,
        Err(e) => {
            halt.set();
            return Err(e);
        }
    };
    // The scheduled refresh of the audiences this node hosts (crate::refresh); it stops
    // as soon as the server starts to stop.
    let refresh_stop = Halt::default();
    let mut refresh_task = tokio::spawn(crate::refresh::run(
        crate::refresh::Scheduler {
            dir: state.dir.clone(),
            party: state.party.clone(),
            contracts: state.contracts.clone(),
            lock: state.audiences.clone(),
            tick: state.options.refresh_tick,
            retry: state.options.retry,
            skew: state.options.refresh_clock_skew_ms.clone(),
        },
        refresh_stop.clone(),
    ));
    let app = router(state);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = halt.wait() => {
                // As if killed: no draining.
                connections.abort_all();
                refresh_task.abort();
                return Ok(());
            }
            accepted = listener.accept() => {
                let Ok((tcp, _addr)) = accepted else {
                    // Out of file descriptors, say: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                let allowed = allowed.clone();
                connections.spawn(async move {
                    // A failed handshake (an unknown certificate, a port scan) just ends
                    // this connection.
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let peer = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| allowed.get(&tls::cert_sha256(c)).cloned());
                    let Some(peer) = peer else { return };
                    let service = TowerToHyperService::new(app.layer(Extension(Peer(peer))));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    refresh_stop.set();
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        connections.abort_all();
    }
    // Background work (a run being driven, a contribution) stops at its next step;
    // what it kept on disk is taken up when the node serves again.
    halt.set();
    if tokio::time::timeout(Duration::from_secs(5), &mut refresh_task)
        .await
        .is_err()
    {
        refresh_task.abort();
        tracing::warn!("the audience refresh did not stop within 5 s; stopped");
    }
    if let Some(d) = dashboard {
        let _ = tokio::time::timeout(Duration::from_secs(5), d).await;
    }
    Ok(())
}

/// A GET to a peer at `addr` whose certificate must hash to `cert_sha256`, as this node.
/// Returns the status and body.
pub async fn get_from_peer(
    node: &NodeDir,
    addr: &str,
    cert_sha256: &str,
    path: &str,
) -> Result<(u16, Bytes)> {
    request_peer(node, addr, cert_sha256, hyper::Method::GET, path, None).await
}

/// A POST of `body` (of media type `content_type`) to a peer, as [`get_from_peer`].
pub async fn post_to_peer(
    node: &NodeDir,
    addr: &str,
    cert_sha256: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Result<(u16, Bytes)> {
    request_peer(
        node,
        addr,
        cert_sha256,
        hyper::Method::POST,
        path,
        Some((content_type, body.into())),
    )
    .await
}

/// Time allowed to connect to a peer and complete the TLS handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One request to a peer, no retry. Failing to reach it is [`Error::Peer`].
pub(crate) async fn request_peer(
    node: &NodeDir,
    addr: &str,
    cert_sha256: &str,
    method: hyper::Method,
    path: &str,
    body: Option<(&str, Bytes)>,
) -> Result<(u16, Bytes)> {
    let net = |e: String| Error::Peer {
        addr: addr.to_string(),
        message: e,
    };
    let (cert, key) = identity(node)?;
    let config = ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Internal(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer {
            cert_sha256: cert_sha256.to_string(),
        }))
        .with_client_auth_cert(vec![cert], key)
        .map_err(|e| Error::Internal(format!("TLS identity: {e}")))?;
    let name = ServerName::try_from("localhost").map_err(|e| Error::Internal(e.to_string()))?;
    let connect = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| net(e.to_string()))?;
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| net(format!("TLS handshake failed: {e}")))
    };
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| {
            net(format!(
                "no connection within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })??;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| net(e.to_string()))?;
    tokio::spawn(conn);
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr)
        .header(header::ACCEPT, "application/json");
    let payload = match body {
        Some((content_type, bytes)) => {
            builder = builder.header(header::CONTENT_TYPE, content_type);
            bytes
        }
        None => Bytes::new(),
    };
    WIRE_SENT.fetch_add(payload.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let request = builder
        .body(Full::new(payload))
        .map_err(|e| Error::Internal(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| net(format!("the peer closed the connection: {e}")))?;
    let status = response.status().as_u16();
    let limited = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE);
    let body = limited
        .collect()
        .await
        .map_err(|e| net(format!("reading the response: {e}")))?
        .to_bytes();
    WIRE_RECEIVED.fetch_add(body.len() as u64, std::sync::atomic::Ordering::Relaxed);
    Ok((status, body))
}
