//! The RTA endpoint: `GET /v1/rta?campaign=C123&device_md5=<32 hex>`.
//!
//! A small HTTP/1.1 server of its own rather than hyper's: requests are parsed by
//! `httparse` (hyper's own parser) straight from a fixed per-connection buffer, the
//! device id into a stack `u128`, and answered with bytes serialised when the index was
//! built (or, for errors, when the server started) into a per-connection output buffer.
//! After a connection's first request nothing is allocated per request, which hyper's
//! header maps and boxed bodies cannot offer (`tests/rta_alloc.rs` counts).
//!
//! - Keep-alive by default (HTTP/1.1), `Connection: close` honoured, HTTP/1.0
//!   keep-alive when asked for; pipelined requests are answered in order.
//! - A request head must fit in [`MAX_HEAD`] bytes with at most [`MAX_HEADERS`]
//!   headers (`431` otherwise); request bodies are not accepted (the answer closes the
//!   connection); malformed HTTP gets `400` and the connection is closed.
//! - A connection idle for [`IDLE_TIMEOUT`] (or holding half a request that long) is
//!   closed; at most [`MAX_CONNECTIONS`] are served at once, further ones are closed at
//!   once.
//! - Graceful shutdown: no new connections; requests already received are answered,
//!   then each connection closes.

use std::future::Future;
use std::io::Write as _;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::index::{DeviceMd5, valid_campaign_id};
use super::live::LiveIndex;
use super::{Error, Result};

/// The longest request head accepted (request line and headers), bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// The most headers one request may have.
pub const MAX_HEADERS: usize = 32;
/// How long a connection may stay idle, or hold an incomplete request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections served at once; the next ones are closed as soon as accepted.
pub const MAX_CONNECTIONS: usize = 10_000;

/// Serves `GET /v1/rta` from `live` on `listener` until `shutdown` completes, then
/// answers what each connection has already sent and closes it.
pub async fn serve(
    listener: TcpListener,
    live: Arc<LiveIndex>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    // Serialise the error answers now, not on a request.
    LazyLock::force(&PROBLEMS);
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    if connections.len() >= MAX_CONNECTIONS {
                        continue; // dropped: closed at once
                    }
                    // Answers are one small write each; a failure only costs latency.
                    let _ = tcp.set_nodelay(true);
                    connections.spawn(connection(tcp, Arc::clone(&live), stopping.clone()));
                }
                // Out of file descriptors and the like: the listener itself is fine,
                // so wait a little rather than spin.
                Err(e) if is_transient(&e) => tokio::time::sleep(Duration::from_millis(10)).await,
                Err(source) => {
                    return Err(Error::Io {
                        context: "accepting RTA connections".into(),
                        source,
                    });
                }
            },
        }
    }
    let _ = stop.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | OutOfMemory
    ) || e.raw_os_error().is_some_and(|n| n == 23 || n == 24) // ENFILE, EMFILE
}

/// One connection: read, answer every complete request buffered, write, repeat.
async fn connection(mut tcp: TcpStream, live: Arc<LiveIndex>, mut stopping: watch::Receiver<bool>) {
    let mut conn = Connection::new();
    loop {
        let next = conn.answer_buffered(&live);
        if !conn.output.is_empty() {
            if tcp.write_all(&conn.output).await.is_err() {
                return;
            }
            conn.output.clear();
        }
        if next == Next::Close || *stopping.borrow() {
            let _ = tcp.shutdown().await;
            return;
        }
        if next == Next::Answer {
            continue;
        }
        let free = &mut conn.input[conn.filled..];
        let read = tokio::select! {
            read = tokio::time::timeout(IDLE_TIMEOUT, tcp.read(free)) => read,
            _ = stopping.changed() => continue, // answers what is buffered, then closes
        };
        match read {
            Ok(Ok(n)) if n > 0 => conn.filled += n,
            // Closed by the client, an error, or idle too long.
            _ => return,
        }
    }
}

/// A connection's buffers, allocated once when it opens.
struct Connection {
    /// Received bytes; `input[..filled]` is not answered yet.
    input: Box<[u8]>,
    filled: usize,
    /// Answers not yet written.
    output: Vec<u8>,
    date: DateCache,
}

/// What a connection does once its answers are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Read more requests.
    Read,
    /// Answer the requests still buffered (the output filled up first).
    Answer,
    /// Close.
    Close,
}

/// What one complete request asked for.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// An answer was written to the output; the request took this many bytes.
    Answered { used: usize, close: bool },
    /// The buffered bytes are not a whole request yet.
    Incomplete,
}

impl Connection {
    fn new() -> Self {
        Self {
            input: vec![0; MAX_HEAD].into_boxed_slice(),
            filled: 0,
            output: Vec::with_capacity(4 * MAX_HEAD),
            date: DateCache::default(),
        }
    }

    /// Answers the complete requests in the input, in order, until the output holds
    /// enough to write.
    fn answer_buffered(&mut self, live: &LiveIndex) -> Next {
        let mut start = 0;
        let next = loop {
            // Keep the output bounded when a client pipelines a lot: write first.
            if self.output.len() >= 3 * MAX_HEAD {
                break Next::Answer;
            }
            let full = self.filled == self.input.len();
            match answer(
                live,
                &self.input[start..self.filled],
                full && start == 0,
                &mut self.output,
                &mut self.date,
            ) {
                Step::Answered { used, close } => {
                    start += used;
                    if close {
                        break Next::Close;
                    }
                }
                Step::Incomplete => break Next::Read,
            }
        };
        // Move what is left (the start of the next request) to the front.
        self.input.copy_within(start..self.filled, 0);
        self.filled -= start;
        next
    }
}

/// Answers the request at the start of `input` into `out`. `full`: the input buffer is
/// full, so an incomplete request can never complete.
fn answer(
    live: &LiveIndex,
    input: &[u8],
    full: bool,
    out: &mut Vec<u8>,
    date: &mut DateCache,
) -> Step {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let used = match request.parse(input) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) if !full => return Step::Incomplete,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => {
            return closing(out, date, &PROBLEMS.too_large, input.len());
        }
        Err(_) => return closing(out, date, &PROBLEMS.malformed, input.len()),
    };
    let http10 = request.version == Some(0);
    let mut close = http10;
    let mut body = false;
    for h in request.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            if has_token(h.value, b"close") {
                close = true;
            } else if has_token(h.value, b"keep-alive") {
                close = false;
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && h.value.trim_ascii() != b"0")
        {
            body = true;
        }
    }
    // Bodies are not read, so the next request could not be found: answer and close.
    close |= body;
    let head_only = request.method == Some("HEAD");
    let target = request.path.unwrap_or("");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let snapshot;
    let (status, content_type, payload): (&[u8], &[u8], &[u8]) =
        if !matches!(request.method, Some("GET" | "HEAD")) {
            PROBLEMS.method.parts()
        } else if body {
            PROBLEMS.body.parts()
        } else if path != "/v1/rta" {
            PROBLEMS.not_found.parts()
        } else {
            match parse_query(query) {
                Err(bad) => PROBLEMS.bad_query(bad).parts(),
                Ok(q) => {
                    snapshot = live.load();
                    match snapshot.decide(q.campaign, q.device) {
                        Some(decision) => (b"200 OK", b"application/json", decision.body()),
                        None => PROBLEMS.unknown_campaign.parts(),
                    }
                }
            }
        };
    let head = Head {
        status,
        content_type,
        length: payload.len(),
        close,
        http10,
    };
    head.write(out, date);
    if !head_only {
        out.extend_from_slice(payload);
    }
    Step::Answered { used, close }
}

/// Answers a request that cannot be read, consuming all of the input, and closes.
fn closing(out: &mut Vec<u8>, date: &mut DateCache, problem: &Problem, used: usize) -> Step {
    let (status, content_type, payload) = problem.parts();
    let head = Head {
        status,
        content_type,
        length: payload.len(),
        close: true,
        http10: false,
    };
    head.write(out, date);
    out.extend_from_slice(payload);
    Step::Answered { used, close: true }
}

/// A response's head.
struct Head<'a> {
    status: &'a [u8],
    content_type: &'a [u8],
    length: usize,
    close: bool,
    http10: bool,
}

impl Head<'_> {
    fn write(&self, out: &mut Vec<u8>, date: &mut DateCache) {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(self.status);
        out.extend_from_slice(b"\r\ncontent-type: ");
        out.extend_from_slice(self.content_type);
        // Writing to a `Vec` cannot fail.
        let _ = write!(out, "\r\ncontent-length: {}\r\ndate: ", self.length);
        out.extend_from_slice(date.now());
        if self.status.starts_with(b"405") {
            out.extend_from_slice(b"\r\nallow: GET, HEAD");
        }
        out.extend_from_slice(match (self.close, self.http10) {
            (true, _) => b"\r\nconnection: close\r\n\r\n".as_slice(),
            (false, true) => b"\r\nconnection: keep-alive\r\n\r\n",
            (false, false) => b"\r\n\r\n",
        });
    }
}

/// Whether a comma-separated header value has `token` (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// The `date` header, formatted once a second.
#[derive(Default)]
struct DateCache {
    second: u64,
    text: [u8; 29],
}

impl DateCache {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second || self.text[0] == 0 {
            self.second = second;
            // An IMF-fixdate is always 29 bytes.
            let mut cursor = std::io::Cursor::new(&mut self.text[..]);
            let _ = write!(cursor, "{}", httpdate::HttpDate::from(now));
        }
        &self.text
    }
}

/// An error answer, serialised once.
struct Problem {
    status: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Problem {
    fn new(
        code: u16,
        reason: &'static str,
        status: &'static str,
        kind: &str,
        detail: &str,
    ) -> Self {
        let body = serde_json::json!({
            "type": format!("urn:jingteng:error:{kind}"),
            "title": reason,
            "status": code,
            "detail": detail,
        });
        Self {
            status,
            content_type: "application/problem+json",
            body: body.to_string().into_bytes(),
        }
    }

    fn parts(&self) -> (&[u8], &[u8], &[u8]) {
        (
            self.status.as_bytes(),
            self.content_type.as_bytes(),
            &self.body,
        )
    }
}

/// Every error answer the endpoint gives; none echoes the request.
struct Problems {
    missing_campaign: Problem,
    missing_device: Problem,
    repeated_campaign: Problem,
    repeated_device: Problem,
    bad_campaign: Problem,
    bad_device: Problem,
    unknown_campaign: Problem,
    not_found: Problem,
    method: Problem,
    body: Problem,
    malformed: Problem,
    too_large: Problem,
}

impl Problems {
    fn bad_query(&self, bad: BadQuery) -> &Problem {
        match bad {
            BadQuery::Missing("campaign") => &self.missing_campaign,
            BadQuery::Missing(_) => &self.missing_device,
            BadQuery::Repeated("campaign") => &self.repeated_campaign,
            BadQuery::Repeated(_) => &self.repeated_device,
            BadQuery::Campaign => &self.bad_campaign,
            BadQuery::Device => &self.bad_device,
        }
    }
}

static PROBLEMS: LazyLock<Problems> = LazyLock::new(|| {
    let bad = |kind, detail| Problem::new(400, "Bad Request", "400 Bad Request", kind, detail);
    Problems {
        missing_campaign: bad(
            "missing-parameter",
            "the query parameter campaign (the campaign id) is required",
        ),
        missing_device: bad(
            "missing-parameter",
            "the query parameter device_md5 (32 hex digits: the MD5 of the user's canonical device id) is required",
        ),
        repeated_campaign: bad("repeated-parameter", "campaign is given more than once"),
        repeated_device: bad("repeated-parameter", "device_md5 is given more than once"),
        bad_campaign: bad(
            "bad-campaign",
            "campaign must be 1-64 letters, digits, '.', '_', '~' or '-' (not percent-encoded)",
        ),
        bad_device: bad(
            "bad-device-md5",
            "device_md5 must be 32 hex digits: the MD5 of the user's canonical device id (Tencent Ads hashed device conventions)",
        ),
        unknown_campaign: Problem::new(
            404,
            "Not Found",
            "404 Not Found",
            "unknown-campaign",
            "no active campaign has this id on this node",
        ),
        not_found: Problem::new(
            404,
            "Not Found",
            "404 Not Found",
            "not-found",
            "no such endpoint; RTA is GET /v1/rta?campaign=…&device_md5=…",
        ),
        method: Problem::new(
            405,
            "Method Not Allowed",
            "405 Method Not Allowed",
            "method-not-allowed",
            "RTA answers GET (and HEAD) only",
        ),
        body: bad(
            "body-not-accepted",
            "an RTA request has no body; the connection is closed",
        ),
        malformed: bad("malformed-request", "not an HTTP/1.x request"),
        too_large: Problem::new(
            431,
            "Request Header Fields Too Large",
            "431 Request Header Fields Too Large",
            "request-too-large",
            "the request head is over 8 KiB or has more than 32 headers",
        ),
    }
});

/// A query that cannot be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadQuery {
    Missing(&'static str),
    Repeated(&'static str),
    Campaign,
    Device,
}

/// The parsed query; borrows the request's bytes.
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use proptest::prelude::*;

    use super::*;
    use crate::rta::{CampaignList, RtaIndex};

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

    fn live() -> LiveIndex {
        let d = DeviceMd5::parse_hex(HEX).unwrap();
        LiveIndex::new(
            RtaIndex::build(vec![CampaignList::new("C1").tier(2.0, vec![d])], &[]).unwrap(),
        )
    }

    /// Runs `input` through a connection's buffers; returns the output and whether the
    /// connection closes.
    fn run(live: &LiveIndex, mut input: &[u8]) -> (String, bool) {
        let mut conn = Connection::new();
        let mut out = Vec::new();
        loop {
            let n = input.len().min(conn.input.len() - conn.filled);
            conn.input[conn.filled..conn.filled + n].copy_from_slice(&input[..n]);
            conn.filled += n;
            input = &input[n..];
            let next = conn.answer_buffered(live);
            out.append(&mut conn.output);
            match next {
                Next::Close => return (String::from_utf8_lossy(&out).into_owned(), true),
                Next::Read if input.is_empty() => {
                    return (String::from_utf8_lossy(&out).into_owned(), false);
                }
                _ => {}
            }
        }
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let live = live();
        let one = format!("GET /v1/rta?campaign=C1&device_md5={HEX} HTTP/1.1\r\nHost: x\r\n\r\n");
        let other =
            "GET /v1/rta?campaign=C1&device_md5=00000000000000000000000000000000 HTTP/1.1\r\n\r\n";
        let (out, close) = run(&live, format!("{one}{other}{one}").as_bytes());
        assert!(!close);
        let bodies: Vec<&str> = out
            .split("\r\n\r\n")
            .skip(1)
            .map(|s| &s[..s.find("HTTP/").unwrap_or(s.len())])
            .collect();
        assert_eq!(
            bodies,
            [
                r#"{"bid":true,"multiplier":2.0}"#,
                r#"{"bid":false,"multiplier":0}"#,
                r#"{"bid":true,"multiplier":2.0}"#
            ]
        );
        assert_eq!(
            out.matches("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ")
                .count(),
            3
        );
    }

    #[test]
    fn connection_handling_follows_http_1_1() {
        let live = live();
        let q = format!("/v1/rta?campaign=C1&device_md5={HEX}");
        // HTTP/1.0 closes unless asked to keep alive, and says so.
        let (out, close) = run(&live, format!("GET {q} HTTP/1.0\r\n\r\n").as_bytes());
        assert!(close && out.contains("connection: close\r\n"));
        let (out, close) = run(
            &live,
            format!("GET {q} HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").as_bytes(),
        );
        assert!(!close && out.contains("connection: keep-alive\r\n"));
        let (out, close) = run(
            &live,
            format!("GET {q} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert!(close && out.contains("connection: close\r\n"));
        // HEAD: the head only, with the body's length.
        let (out, _) = run(&live, format!("HEAD {q} HTTP/1.1\r\n\r\n").as_bytes());
        assert!(
            out.ends_with("\r\n\r\n") && out.contains("content-length: 29\r\n"),
            "{out}"
        );
        // Another method: 405 with allow, a problem body.
        let (out, close) = run(&live, format!("DELETE {q} HTTP/1.1\r\n\r\n").as_bytes());
        assert!(
            out.starts_with("HTTP/1.1 405 ") && out.contains("allow: GET, HEAD\r\n\r\n{"),
            "{out}"
        );
        assert!(!close);
        // A body: answered, then closed (the next request could not be found).
        let (out, close) = run(
            &live,
            format!("POST {q} HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello").as_bytes(),
        );
        assert!(close && out.starts_with("HTTP/1.1 405 "), "{out}");
        let (out, close) = run(
            &live,
            format!("GET {q} HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n").as_bytes(),
        );
        assert!(close && out.contains("body-not-accepted"), "{out}");
        // Garbage, and a head that never ends.
        let (out, close) = run(&live, b"\x16\x03\x01 hello\r\n\r\n");
        assert!(
            close && out.starts_with("HTTP/1.1 400 ") && out.contains("malformed-request"),
            "{out}"
        );
        let long = format!("GET {q} HTTP/1.1\r\nx: {}\r\n", "y".repeat(MAX_HEAD));
        let (out, close) = run(&live, long.as_bytes());
        assert!(close && out.starts_with("HTTP/1.1 431 "), "{out}");
        let many = format!(
            "GET {q} HTTP/1.1\r\n{}\r\n",
            "a: b\r\n".repeat(MAX_HEADERS + 1)
        );
        let (out, close) = run(&live, many.as_bytes());
        assert!(close && out.starts_with("HTTP/1.1 431 "), "{out}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever bytes arrive, the server answers or waits; it never panics, and
        /// every answer is a whole HTTP response.
        #[test]
        fn any_bytes_get_an_answer_or_a_wait(input in prop::collection::vec(any::<u8>(), 0..600)) {
            let live = live();
            let (out, _) = run(&live, &input);
            prop_assert!(out.is_empty() || out.starts_with("HTTP/1.1 "));
        }

        #[test]
        fn any_query_gets_an_answer(q in "[a-z_=&%0-9A-F.~-]{0,80}") {
            let live = live();
            let (out, close) = run(&live, format!("GET /v1/rta?{q} HTTP/1.1\r\n\r\n").as_bytes());
            prop_assert!(!close);
            prop_assert!(
                ["HTTP/1.1 200 ", "HTTP/1.1 400 ", "HTTP/1.1 404 "].iter().any(|s| out.starts_with(s)),
                "{} for {}", out, q
            );
        }
    }
}
