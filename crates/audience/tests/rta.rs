#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

//! RTA: decisions against a plain `HashMap`, suppression, atomic refresh, and the HTTP
//! endpoint over real loopback connections (keep-alive, pipelining, shutdown).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use jingteng_audience::rta::{CampaignList, DeviceMd5, LiveIndex, RtaIndex, serve};
use jingteng_psi::DeviceType;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

fn d(i: u64) -> DeviceMd5 {
    DeviceMd5::of_device(DeviceType::Imei, &format!("86{i:013}")).unwrap()
}

/// A list as (campaign, tiers of (multiplier, member numbers)).
type Spec = Vec<Vec<(f64, Vec<u64>)>>;

fn lists(spec: &Spec) -> Vec<CampaignList> {
    spec.iter()
        .enumerate()
        .map(|(c, tiers)| {
            tiers
                .iter()
                .fold(CampaignList::new(format!("C{c}")), |l, (m, ms)| {
                    l.tier(*m, ms.iter().map(|&i| d(i)).collect())
                })
        })
        .collect()
}

/// The plain reference: (campaign, user) → highest multiplier, minus suppressed users.
fn reference(spec: &Spec, suppressed: &[u64]) -> HashMap<(usize, u64), f64> {
    let mut r: HashMap<(usize, u64), f64> = HashMap::new();
    for (c, tiers) in spec.iter().enumerate() {
        for (m, members) in tiers {
            for &i in members {
                let e = r.entry((c, i)).or_insert(*m);
                *e = e.max(*m);
            }
        }
    }
    r.retain(|(_, i), _| !suppressed.contains(i));
    r
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    let multiplier = (1u32..=40).prop_map(|m| f64::from(m) / 4.0);
    let tier = (multiplier, prop::collection::vec(0u64..300, 0..120));
    prop::collection::vec(prop::collection::vec(tier, 0..4), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn decisions_equal_a_plain_hashmap(
        spec in spec_strategy(),
        suppressed in prop::collection::vec(0u64..300, 0..40),
    ) {
        let index = RtaIndex::build(
            lists(&spec),
            &suppressed.iter().map(|&i| d(i)).collect::<Vec<_>>(),
        ).unwrap();
        let want = reference(&spec, &suppressed);
        // Users 300..320 are never listed.
        for c in 0..spec.len() {
            for i in 0..320 {
                let got = index.decide(&format!("C{c}"), d(i)).unwrap();
                prop_assert_eq!(got.multiplier(), want.get(&(c, i)).copied(), "C{} user {}", c, i);
                prop_assert_eq!(got.bid(), want.contains_key(&(c, i)));
                if suppressed.contains(&i) {
                    prop_assert!(!got.bid(), "a suppressed user got a bid");
                }
            }
        }
        let unknown = format!("C{}", spec.len());
        prop_assert!(index.decide(&unknown, d(0)).is_none());
        let users: std::collections::HashSet<u64> = want.keys().map(|&(_, i)| i).collect();
        prop_assert_eq!(index.stats().users, users.len() as u64);
        prop_assert_eq!(index.stats().memberships, want.len() as u64);
    }
}

#[test]
fn a_hundred_thousand_random_users_match_the_reference() {
    let spec: Spec = (0..5)
        .map(|c| {
            (0..3)
                .map(|t| {
                    let members = (0..100_000u64)
                        .filter(|i| (i.wrapping_mul(2_654_435_761) >> (c + t)) % 5 == 0)
                        .collect();
                    (1.0 + t as f64 / 2.0, members)
                })
                .collect()
        })
        .collect();
    let suppressed: Vec<u64> = (0..100_000).step_by(97).collect();
    let index = RtaIndex::build(
        lists(&spec),
        &suppressed.iter().map(|&i| d(i)).collect::<Vec<_>>(),
    )
    .unwrap();
    let want = reference(&spec, &suppressed);
    for c in 0..5 {
        for i in (0..110_000).step_by(3) {
            let got = index.decide(&format!("C{c}"), d(i)).unwrap();
            assert_eq!(got.multiplier(), want.get(&(c, i)).copied());
        }
    }
}

#[test]
fn suppressed_users_get_no_for_every_campaign() {
    let everyone: Vec<DeviceMd5> = (0..1000).map(d).collect();
    let suppressed: Vec<DeviceMd5> = (0..1000).step_by(10).map(d).collect();
    let index = RtaIndex::build(
        vec![
            CampaignList::new("A").tier(2.0, everyone.clone()),
            CampaignList::new("B")
                .tier(1.0, everyone.clone())
                .tier(3.0, suppressed.clone()),
        ],
        &suppressed,
    )
    .unwrap();
    for s in &suppressed {
        assert!(!index.contains(*s));
        for c in ["A", "B"] {
            assert!(!index.decide(c, *s).unwrap().bid());
        }
    }
    assert_eq!(index.stats().users, 900);
    assert_eq!(index.stats().suppressed_members, 300);
    // And an opt-out after the build wins at once, for every campaign.
    let live = LiveIndex::new(index);
    assert_eq!(live.forget(&[d(1), d(10)]), 1);
    for c in ["A", "B"] {
        assert!(!live.load().decide(c, d(1)).unwrap().bid());
        assert!(live.load().decide(c, d(2)).unwrap().bid());
    }
}

/// Two indexes that differ in every answer: under `a` every member of C has 1.0 and
/// campaign "only-a" exists; under `b` every member has 2.0 and "only-b" exists.
fn generation(m: f64, only: &str) -> RtaIndex {
    RtaIndex::build(
        vec![
            CampaignList::new("C").tier(m, (0..20_000).map(d).collect()),
            CampaignList::new(only).tier(m, vec![d(0)]),
        ],
        &[],
    )
    .unwrap()
}

#[test]
fn a_reader_never_sees_a_half_built_index() {
    let live = Arc::new(LiveIndex::new(generation(1.0, "only-a")));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (live, done) = (Arc::clone(&live), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut seen = [0u64; 2];
                let mut n = 0u64;
                while !done.load(Ordering::Relaxed) || n < 1000 {
                    let s = live.load();
                    let m = s.decide("C", d((n * 7 + r) % 20_000)).unwrap().multiplier();
                    let other = s
                        .decide("C", d((n * 13 + 5) % 20_000))
                        .unwrap()
                        .multiplier();
                    // One snapshot is one whole index: both answers and the campaign set agree.
                    assert_eq!(m, other);
                    match m {
                        Some(1.0) => {
                            assert!(s.index().has_campaign("only-a"));
                            assert!(!s.index().has_campaign("only-b"));
                            seen[0] += 1;
                        }
                        Some(2.0) => {
                            assert!(s.index().has_campaign("only-b"));
                            assert!(!s.index().has_campaign("only-a"));
                            seen[1] += 1;
                        }
                        other => panic!("answer {other:?} from no index"),
                    }
                    n += 1;
                }
                seen
            })
        })
        .collect();
    let mut last = 1;
    for k in 0..40 {
        let next = if k % 2 == 0 {
            generation(2.0, "only-b")
        } else {
            generation(1.0, "only-a")
        };
        let g = live.replace(next);
        assert_eq!(g, last + 1);
        last = g;
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        let seen = r.join().unwrap();
        assert!(seen[0] + seen[1] >= 1000);
    }
    assert_eq!(live.load().generation(), 41);
}

struct Answer {
    status: u16,
    content_type: String,
    body: serde_json::Value,
}

/// A server on loopback for one test; stops when dropped.
struct Server {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<jingteng_audience::rta::Result<()>>>,
}

impl Server {
    async fn start(live: &Arc<LiveIndex>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, Arc::clone(live), async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// Reads one response from a keep-alive connection (head, then `content-length` bytes).
async fn read_answer(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Answer> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = response.parse(buf).unwrap() {
            let header = |name: &str| {
                response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8(h.value.to_vec()).unwrap())
            };
            let length: usize = header("content-length").unwrap().parse().unwrap();
            if buf.len() >= head + length {
                let answer = Answer {
                    status: response.code.unwrap(),
                    content_type: header("content-type").unwrap_or_default(),
                    body: serde_json::from_slice(&buf[head..head + length])
                        .unwrap_or(serde_json::Value::Null),
                };
                buf.drain(..head + length);
                return Some(answer);
            }
        }
        let mut chunk = [0u8; 4096];
        let n = tcp.read(&mut chunk).await.unwrap();
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// One request on a connection of its own.
async fn get(server: &Server, method: &str, uri: &str) -> Answer {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(format!("{method} {uri} HTTP/1.1\r\nhost: rta\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_answer(&mut tcp, &mut Vec::new()).await.unwrap()
}

fn live() -> Arc<LiveIndex> {
    let index = RtaIndex::build(
        vec![
            CampaignList::new("C123")
                .tier(1.0, vec![d(1), d(2)])
                .tier(1.5, vec![d(2)]),
        ],
        &[d(1)],
    )
    .unwrap();
    Arc::new(LiveIndex::new(index))
}

#[tokio::test]
async fn the_endpoint_answers_from_the_index() {
    let live = live();
    let server = Server::start(&live).await;
    let uri = |i: u64| format!("/v1/rta?campaign=C123&device_md5={}", d(i).to_hex());
    let a = get(&server, "GET", &uri(2)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type, "application/json");
    assert_eq!(a.body, serde_json::json!({"bid": true, "multiplier": 1.5}));
    // Upper-case hex is the same user.
    let upper = format!(
        "/v1/rta?campaign=C123&device_md5={}",
        d(2).to_hex().to_uppercase()
    );
    assert_eq!(get(&server, "GET", &upper).await.body["bid"], true);
    // Suppressed at build, and a stranger.
    for i in [1, 3] {
        let a = get(&server, "GET", &uri(i)).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body, serde_json::json!({"bid": false, "multiplier": 0}));
    }
    // Forgotten after the build: no from the next request on.
    live.forget(&[d(2)]);
    assert_eq!(get(&server, "GET", &uri(2)).await.body["bid"], false);
    // Refreshed: the new index answers.
    live.replace(
        RtaIndex::build(vec![CampaignList::new("C123").tier(3.0, vec![d(3)])], &[]).unwrap(),
    );
    assert_eq!(get(&server, "GET", &uri(3)).await.body["multiplier"], 3.0);
    server.stop().await;
}

#[tokio::test]
async fn malformed_queries_are_400_problems() {
    let live = live();
    let server = Server::start(&live).await;
    let hex = d(2).to_hex();
    for (uri, code) in [
        ("/v1/rta".to_string(), "missing-parameter"),
        (format!("/v1/rta?device_md5={hex}"), "missing-parameter"),
        ("/v1/rta?campaign=C123".to_string(), "missing-parameter"),
        (
            format!("/v1/rta?campaign=C123&campaign=C1&device_md5={hex}"),
            "repeated-parameter",
        ),
        (
            format!("/v1/rta?campaign=C123&device_md5={hex}&device_md5={hex}"),
            "repeated-parameter",
        ),
        (
            format!("/v1/rta?campaign=C%20123&device_md5={hex}"),
            "bad-campaign",
        ),
        (
            format!("/v1/rta?campaign=&device_md5={hex}"),
            "bad-campaign",
        ),
        (
            format!("/v1/rta?campaign={}&device_md5={hex}", "C".repeat(65)),
            "bad-campaign",
        ),
        (
            "/v1/rta?campaign=C123&device_md5=xyz".to_string(),
            "bad-device-md5",
        ),
        (
            format!("/v1/rta?campaign=C123&device_md5={}", &hex[..31]),
            "bad-device-md5",
        ),
        (
            format!("/v1/rta?campaign=C123&device_md5={hex}00"),
            "bad-device-md5",
        ),
        (
            format!("/v1/rta?campaign=C123&device_md5=%20{}", &hex[1..]),
            "bad-device-md5",
        ),
        (
            format!("/v1/rta?campaign=C123&device_md5={}g", &hex[..31]),
            "bad-device-md5",
        ),
    ] {
        let a = get(&server, "GET", &uri).await;
        assert_eq!(a.status, 400, "{uri}");
        assert_eq!(a.content_type, "application/problem+json", "{uri}");
        assert_eq!(
            a.body["type"],
            format!("urn:jingteng:error:{code}"),
            "{uri}"
        );
        assert_eq!(a.body["status"], 400);
        let detail = a.body["detail"].as_str().unwrap();
        assert!(!detail.contains(&hex), "the id is not echoed: {detail}");
    }
    let a = get(
        &server,
        "GET",
        &format!("/v1/rta?campaign=C9&device_md5={hex}"),
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(a.body["type"], "urn:jingteng:error:unknown-campaign");
    let a = get(&server, "GET", "/v2/rta").await;
    assert_eq!(a.status, 404);
    assert_eq!(a.body["type"], "urn:jingteng:error:not-found");
    let a = get(
        &server,
        "POST",
        &format!("/v1/rta?campaign=C123&device_md5={hex}"),
    )
    .await;
    assert_eq!(a.status, 405);
}

#[tokio::test]
async fn one_keep_alive_connection_carries_many_decisions() {
    let live = live();
    let server = Server::start(&live).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let mut buf = Vec::new();
    let request = |i: u64| {
        format!(
            "GET /v1/rta?campaign=C123&device_md5={}&req={i} HTTP/1.1\r\nhost: rta\r\n\r\n",
            d(i).to_hex()
        )
    };
    for k in 0..50u64 {
        let i = 1 + k % 3;
        tcp.write_all(request(i).as_bytes()).await.unwrap();
        let a = read_answer(&mut tcp, &mut buf).await.unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.body["bid"], i == 2, "user {i}");
    }
    // Pipelined: 30 requests in one write, answered in order.
    let batch: String = (0..30u64).map(|k| request(1 + k % 3)).collect();
    tcp.write_all(batch.as_bytes()).await.unwrap();
    for k in 0..30u64 {
        let a = read_answer(&mut tcp, &mut buf).await.unwrap();
        assert_eq!(a.body["bid"], k % 3 == 1, "pipelined request {k}");
    }
    // A malformed query on the same connection is a 400, and the connection lives on.
    tcp.write_all(b"GET /v1/rta?campaign=C123&device_md5=nothex HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_answer(&mut tcp, &mut buf).await.unwrap().status, 400);
    tcp.write_all(request(2).as_bytes()).await.unwrap();
    assert_eq!(
        read_answer(&mut tcp, &mut buf).await.unwrap().body["bid"],
        true
    );
    // Malformed HTTP is a 400 that closes the connection.
    tcp.write_all(b"\x00\x01 not http\r\n\r\n").await.unwrap();
    assert_eq!(read_answer(&mut tcp, &mut buf).await.unwrap().status, 400);
    assert!(read_answer(&mut tcp, &mut buf).await.is_none(), "closed");
    // Graceful shutdown closes idle keep-alive connections and returns.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(request(2).as_bytes()).await.unwrap();
    assert_eq!(
        read_answer(&mut idle, &mut Vec::new())
            .await
            .unwrap()
            .status,
        200
    );
    tokio::time::timeout(std::time::Duration::from_secs(10), server.stop())
        .await
        .expect("shutdown waits for no idle connection");
    assert!(read_answer(&mut idle, &mut Vec::new()).await.is_none());
}
