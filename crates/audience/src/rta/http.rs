//! The RTA endpoint: `GET /v1/rta?campaign=C123&device_md5=<32 hex>`.
//!
//! The hot path parses the query in place (the device id into a stack `u128`), clones
//! the current snapshot's `Arc` and answers with bytes serialised when the index was
//! built: no heap allocation of its own beyond the response hyper and axum build.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;

use super::index::{DeviceMd5, valid_campaign_id};
use super::live::LiveIndex;
use super::{Error, Result};

/// The RTA API on `live`: `GET /v1/rta`; anything else is a `404` problem.
pub fn router(live: Arc<LiveIndex>) -> Router {
    Router::new()
        .route("/v1/rta", get(decide))
        .fallback(not_found)
        .with_state(live)
}

/// Serves [`router`] on `listener` (HTTP/1.1, keep-alive, `TCP_NODELAY`) until
/// `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    live: Arc<LiveIndex>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = listener.tap_io(|tcp| {
        // Answers are one small write each; a failure only costs latency.
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(live))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| Error::Io {
            context: "serving RTA".into(),
            source,
        })
}

/// A query that cannot be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadQuery {
    Missing(&'static str),
    Repeated(&'static str),
    Campaign,
    Device,
}

impl BadQuery {
    fn response(self) -> Response {
        let (code, detail) = match self {
            BadQuery::Missing("campaign") => (
                "missing-parameter",
                "the query parameter campaign (the campaign id) is required",
            ),
            BadQuery::Missing(_) => (
                "missing-parameter",
                "the query parameter device_md5 (32 hex digits: the MD5 of the user's canonical device id) is required",
            ),
            BadQuery::Repeated("campaign") => {
                ("repeated-parameter", "campaign is given more than once")
            }
            BadQuery::Repeated(_) => ("repeated-parameter", "device_md5 is given more than once"),
            BadQuery::Campaign => (
                "bad-campaign",
                "campaign must be 1-64 letters, digits, '.', '_', '~' or '-' (not percent-encoded)",
            ),
            BadQuery::Device => (
                "bad-device-md5",
                "device_md5 must be 32 hex digits: the MD5 of the user's canonical device id (Tencent Ads hashed device conventions)",
            ),
        };
        problem(StatusCode::BAD_REQUEST, code, detail)
    }
}

/// The parsed query; borrows the request's URI.
#[derive(Debug)]
struct Query<'a> {
    campaign: &'a str,
    device: DeviceMd5,
}

/// Parses `campaign=…&device_md5=…` without allocating; other parameters are ignored
/// (platforms add their own, such as a request id).
fn parse_query(query: Option<&str>) -> Result<Query<'_>, BadQuery> {
    let mut campaign = None;
    let mut device = None;
    for pair in query.unwrap_or("").split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "campaign" if campaign.replace(value).is_some() => {
                return Err(BadQuery::Repeated("campaign"));
            }
            "device_md5" if device.replace(value).is_some() => {
                return Err(BadQuery::Repeated("device_md5"));
            }
            _ => {}
        }
    }
    let campaign = campaign.ok_or(BadQuery::Missing("campaign"))?;
    let device = device.ok_or(BadQuery::Missing("device_md5"))?;
    if !valid_campaign_id(campaign) {
        return Err(BadQuery::Campaign);
    }
    // The hex must be exactly 32 digits: no spaces, no signs.
    if device.len() != 32 {
        return Err(BadQuery::Device);
    }
    let device = DeviceMd5::parse_hex(device).map_err(|_| BadQuery::Device)?;
    Ok(Query { campaign, device })
}

async fn decide(State(live): State<Arc<LiveIndex>>, request: Request) -> Response {
    let query = match parse_query(request.uri().query()) {
        Ok(q) => q,
        Err(bad) => return bad.response(),
    };
    let snapshot = live.load();
    match snapshot.decide(query.campaign, query.device) {
        Some(decision) => {
            let mut response = Response::new(Body::from(decision.body().clone()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        None => problem(
            StatusCode::NOT_FOUND,
            "unknown-campaign",
            "no active campaign has this id on this node",
        ),
    }
}

async fn not_found() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        "not-found",
        "no such endpoint; RTA is GET /v1/rta?campaign=…&device_md5=…",
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const HEX: &str = "0123456789abcdef0123456789ABCDEF";

    #[test]
    fn queries_parse_in_place() {
        let text = format!("campaign=C1&device_md5={HEX}&req=9");
        let q = parse_query(Some(&text)).unwrap();
        assert_eq!(q.campaign, "C1");
        assert_eq!(q.device, DeviceMd5::parse_hex(HEX).unwrap());
        let text = format!("&device_md5={HEX}&&campaign=a.b-c_d~e");
        let q = parse_query(Some(&text)).unwrap();
        assert_eq!(q.campaign, "a.b-c_d~e");
    }

    #[test]
    fn bad_queries_say_what_is_wrong() {
        let cases = [
            (None, BadQuery::Missing("campaign")),
            (Some(""), BadQuery::Missing("campaign")),
            (Some("campaign=C1"), BadQuery::Missing("device_md5")),
            (
                Some("campaign=C1&campaign=C2"),
                BadQuery::Repeated("campaign"),
            ),
            (Some("campaign=C%31&device_md5=00"), BadQuery::Campaign),
            (Some("campaign=&device_md5=00"), BadQuery::Campaign),
            (Some("campaign=C1&device_md5=00"), BadQuery::Device),
            (Some("campaign=C1&device_md5"), BadQuery::Device),
        ];
        for (q, want) in cases {
            assert_eq!(parse_query(q).unwrap_err(), want, "{q:?}");
        }
        let spaced = format!("campaign=C1&device_md5=+{}", &HEX[1..]);
        assert_eq!(parse_query(Some(&spaced)).unwrap_err(), BadQuery::Device);
        let long = format!("campaign=C1&device_md5={HEX}0");
        assert_eq!(parse_query(Some(&long)).unwrap_err(), BadQuery::Device);
    }
}
