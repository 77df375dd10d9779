//! `jingteng serve`: the node-to-node API over mutual TLS, and the client side of it.
//!
//! The server accepts only peers whose certificate a signed, active contract in its
//! catalog lists (and its own), knows which party each connection is, and answers
//! versioned endpoints under `/v1/`. Errors are `application/problem+json`.

use std::collections::BTreeMap;
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
use jingteng_psi::{BlindedBatch, Party, SecretKey};
use rand::TryRngCore;
use rustls::ClientConfig;
use rustls::ServerConfig;
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::contract::{Contract, ContractBody};
use crate::netmatch::{self, Run, Runs};
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
    /// Match runs this node hosts.
    runs: Runs,
    /// This node's PSI key per collaboration, made on first use and kept in memory only
    /// (zeroised on drop): a restarted node has a new key, so a match restarts with it.
    psi: Arc<tokio::sync::Mutex<BTreeMap<String, Arc<Party>>>>,
}

/// Media type of a PSI batch on the wire.
pub const PSI_BATCH_TYPE: &str = "application/vnd.jingteng.psi-batch.v1";

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
            "/v1/collaborations/{id}/match/{run}/failed",
            axum::routing::post(receive_failure),
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

/// This node's PSI key for collaboration `id`: made on first use, in memory only.
#[allow(clippy::result_large_err)]
async fn psi_key(state: &AppState, id: &str) -> Result<Arc<Party>, Response> {
    let mut keys = state.psi.lock().await;
    if let Some(p) = keys.get(id) {
        return Ok(p.clone());
    }
    let mut wide = zeroize::Zeroizing::new([0u8; 64]);
    if rand::rngs::OsRng.try_fill_bytes(wide.as_mut()).is_err() {
        return Err(problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no randomness for a key",
        ));
    }
    let p = Arc::new(Party::new(SecretKey::from_uniform_bytes(&wide)));
    keys.insert(id.to_string(), p.clone());
    Ok(p)
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

/// Starts a match this node hosts: asks every member to contribute. Only the node's own
/// operator (its own certificate) may start one.
async fn start_match(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    Extension(peer): Extension<Peer>,
) -> Response {
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
    let run: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let Ok(node) = NodeDir::open(&state.dir) else {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "node directory unreadable",
        );
    };
    // The run is a job in the host's catalog: running until linked or failed.
    let job = match node.catalog().and_then(|mut c| {
        Ok(c.start_job("match", Some(&id), &serde_json::json!({ "run": run }))?)
    }) {
        Ok(job) => job,
        Err(e) => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &e.to_string(),
            );
        }
    };
    state.runs.lock().await.insert(
        run.clone(),
        Run {
            collaboration: id.clone(),
            started: Some(std::time::Instant::now()),
            job: Some(job),
            ..Run::default()
        },
    );
    let node = Arc::new(node);
    for m in body.members.clone() {
        let (node, runs, run, id) = (node.clone(), state.runs.clone(), run.clone(), id.clone());
        tokio::spawn(async move {
            let path = format!("/v1/collaborations/{id}/match/{run}/contribute");
            let answer = post_to_peer(
                &node,
                &m.endpoint,
                &m.cert_sha256,
                &path,
                "application/json",
                vec![],
            )
            .await;
            let failed = match answer {
                Ok((202, _)) => None,
                Ok((status, body)) => Some(format!(
                    "{} refused to contribute ({status}): {}",
                    m.party,
                    String::from_utf8_lossy(&body)
                )),
                Err(e) => Some(format!("{} unreachable: {e}", m.party)),
            };
            if let Some(e) = failed
                && let Some(r) = runs.lock().await.get_mut(&run)
            {
                r.fail(node.dir(), e);
            }
        });
    }
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "run": run })),
    )
        .into_response()
}

/// A host asks this member to contribute: runs its side in the background and sends
/// the result (or the failure) to the host.
async fn contribute(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path((id, run)): axum::extract::Path<(String, String)>,
    Extension(peer): Extension<Peer>,
) -> Response {
    let body = match member_check(&state, &id, &peer) {
        Ok(b) => b.clone(),
        Err(r) => return r,
    };
    let me = match psi_key(&state, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    // Join keys go only to the host the signed spec names.
    if let Err(r) = host_check(&body, &peer.0) {
        return r;
    }
    let Some(host) = body.members.iter().find(|m| m.party == peer.0).cloned() else {
        return problem(StatusCode::FORBIDDEN, "not-a-member", "unknown host");
    };
    let dir = state.dir.clone();
    let runtime = tokio::runtime::Handle::current();
    tokio::spawn(async move {
        let Ok(node) = NodeDir::open(&dir) else {
            return;
        };
        let node = Arc::new(node);
        let work = {
            let (node, body, runtime) = (node.clone(), body.clone(), runtime.clone());
            tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
                let collab = jingteng_psi::Collaboration::parse(&body.spec)
                    .map_err(|e| Error::Contract(e.to_string()))?;
                let part = netmatch::contribute_here(&node, &collab, &body.members, &me, runtime)?;
                netmatch::encode_contribution(&part)
            })
            .await
        };
        let (path, ctype, payload) = match work {
            Ok(Ok(bytes)) => (
                format!("/v1/collaborations/{id}/match/{run}/result"),
                "application/vnd.jingteng.contribution.v1",
                bytes,
            ),
            Ok(Err(e)) => (
                format!("/v1/collaborations/{id}/match/{run}/failed"),
                "text/plain",
                e.to_string().into_bytes(),
            ),
            Err(_) => (
                format!("/v1/collaborations/{id}/match/{run}/failed"),
                "text/plain",
                b"contribution crashed".to_vec(),
            ),
        };
        let _ = post_to_peer(
            &node,
            &host.endpoint,
            &host.cert_sha256,
            &path,
            ctype,
            payload,
        )
        .await;
    });
    StatusCode::ACCEPTED.into_response()
}

/// Largest contribution a member may send (about 50 M keys).
const MAX_CONTRIBUTION_BYTES: usize = 1 << 30;

/// A member's contribution to a run this node hosts. When all are in, the host links.
async fn receive_result(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path((id, run)): axum::extract::Path<(String, String)>,
    Extension(peer): Extension<Peer>,
    bytes: Bytes,
) -> Response {
    let body = match member_check(&state, &id, &peer) {
        Ok(b) => b.clone(),
        Err(r) => return r,
    };
    let names = party_names(&body);
    let Some(index) = names.iter().position(|n| *n == peer.0) else {
        return problem(StatusCode::FORBIDDEN, "not-a-member", "unknown party");
    };
    let part = match netmatch::decode_contribution(&bytes) {
        Ok(p) if p.party == index => p,
        Ok(_) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad-contribution",
                "a party may only contribute for itself",
            );
        }
        Err(e) => return problem(StatusCode::BAD_REQUEST, "bad-contribution", &e),
    };
    let mut runs = state.runs.lock().await;
    let Some(r) = runs.get_mut(&run).filter(|r| r.collaboration == id) else {
        return problem(StatusCode::NOT_FOUND, "no-run", "no such match run");
    };
    if r.parts.contains_key(&index) {
        return problem(
            StatusCode::CONFLICT,
            "duplicate",
            "this party already contributed",
        );
    }
    r.parts.insert(index, part);
    if r.parts.len() == names.len() {
        let parts: Vec<_> = std::mem::take(&mut r.parts).into_values().collect();
        let elapsed = r.started.map(|s| s.elapsed()).unwrap_or_default();
        drop(runs);
        let (runs, dir, spec) = (state.runs.clone(), state.dir.clone(), body.spec.clone());
        let (run2, id2, names2) = (run.clone(), id.clone(), names.clone());
        tokio::task::spawn_blocking(move || {
            let outcome = jingteng_psi::Collaboration::parse(&spec)
                .map_err(|e| e.to_string())
                .and_then(|c| {
                    jingteng_match::link_and_report(&c, parts, elapsed).map_err(|e| e.to_string())
                });
            if let Ok(report) = &outcome
                && let Ok(node) = NodeDir::open(&dir)
                && let Ok(mut catalog) = node.catalog()
            {
                let matched: BTreeMap<&String, u64> =
                    report.overlap.iter().map(|(k, v)| (k, v.matched)).collect();
                let _ = catalog.audit(
                    &node.config().party,
                    "match",
                    &id2,
                    &serde_json::json!({"run": run2, "parties": names2, "matched": matched}),
                );
            }
            let mut runs = runs.blocking_lock();
            if let Some(r) = runs.get_mut(&run2) {
                match outcome {
                    Ok(report) => {
                        r.close_job(&dir, None);
                        r.report = Some(report);
                    }
                    Err(e) => r.fail(&dir, e),
                }
            }
        });
    }
    StatusCode::ACCEPTED.into_response()
}

/// A member reports that its contribution failed.
async fn receive_failure(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path((id, run)): axum::extract::Path<(String, String)>,
    Extension(peer): Extension<Peer>,
    bytes: Bytes,
) -> Response {
    if let Err(r) = member_check(&state, &id, &peer) {
        return r;
    }
    let message: String = String::from_utf8_lossy(&bytes)
        .chars()
        .take(2_000)
        .collect();
    if let Some(r) = state
        .runs
        .lock()
        .await
        .get_mut(&run)
        .filter(|r| r.collaboration == id)
    {
        r.error.get_or_insert(format!("{}: {message}", peer.0));
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
    let runs = state.runs.lock().await;
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

/// An `application/problem+json` response with a stable `type`.
fn problem(status: StatusCode, code: &str, detail: &str) -> Response {
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
/// gives open connections up to five seconds to finish.
pub async fn serve(
    node: &NodeDir,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let (allowed, contracts) = pinned_members(node)?;
    let acceptor = TlsAcceptor::from(Arc::new(server_config(node, allowed.clone())?));
    let app = router(AppState {
        party: node.config().party.clone(),
        contracts: Arc::new(contracts),
        dir: Arc::new(node.dir().to_path_buf()),
        runs: Runs::default(),
        psi: Arc::default(),
    });
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
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
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        connections.abort_all();
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
        Some((content_type, body)),
    )
    .await
}

async fn request_peer(
    node: &NodeDir,
    addr: &str,
    cert_sha256: &str,
    method: hyper::Method,
    path: &str,
    body: Option<(&str, Vec<u8>)>,
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
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| net(e.to_string()))?;
    let name = ServerName::try_from("localhost").map_err(|e| Error::Internal(e.to_string()))?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| net(format!("TLS handshake failed: {e}")))?;
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
            Bytes::from(bytes)
        }
        None => Bytes::new(),
    };
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
    Ok((status, body))
}
