#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

//! RTA: decisions against a plain `HashMap`, suppression, atomic refresh, and the HTTP
//! endpoint through its `Router` and over a real keep-alive connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::service::Service as _;
use hyper_util::service::TowerToHyperService;
use jingteng_audience::rta::{CampaignList, DeviceMd5, LiveIndex, RtaIndex, router, serve};
use jingteng_psi::DeviceType;
use proptest::prelude::*;

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
    status: StatusCode,
    content_type: String,
    body: serde_json::Value,
}

async fn get(live: &Arc<LiveIndex>, method: &str, uri: &str) -> Answer {
    let app = TowerToHyperService::new(router(Arc::clone(live)));
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let r = app.call(req).await.unwrap();
    let status = r.status();
    let content_type = r
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Answer {
        status,
        content_type,
        body,
    }
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
    let uri = |i: u64| format!("/v1/rta?campaign=C123&device_md5={}", d(i).to_hex());
    let a = get(&live, "GET", &uri(2)).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.content_type, "application/json");
    assert_eq!(a.body, serde_json::json!({"bid": true, "multiplier": 1.5}));
    // Upper-case hex is the same user.
    let upper = format!(
        "/v1/rta?campaign=C123&device_md5={}",
        d(2).to_hex().to_uppercase()
    );
    assert_eq!(get(&live, "GET", &upper).await.body["bid"], true);
    // Suppressed at build, and a stranger.
    for i in [1, 3] {
        let a = get(&live, "GET", &uri(i)).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body, serde_json::json!({"bid": false, "multiplier": 0}));
    }
    // Forgotten after the build: no from the next request on.
    live.forget(&[d(2)]);
    assert_eq!(get(&live, "GET", &uri(2)).await.body["bid"], false);
    // Refreshed: the new index answers.
    live.replace(
        RtaIndex::build(vec![CampaignList::new("C123").tier(3.0, vec![d(3)])], &[]).unwrap(),
    );
    assert_eq!(get(&live, "GET", &uri(3)).await.body["multiplier"], 3.0);
}

#[tokio::test]
async fn malformed_queries_are_400_problems() {
    let live = live();
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
        let a = get(&live, "GET", &uri).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{uri}");
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
        &live,
        "GET",
        &format!("/v1/rta?campaign=C9&device_md5={hex}"),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.body["type"], "urn:jingteng:error:unknown-campaign");
    let a = get(&live, "GET", "/v2/rta").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.body["type"], "urn:jingteng:error:not-found");
    let a = get(
        &live,
        "POST",
        &format!("/v1/rta?campaign=C123&device_md5={hex}"),
    )
    .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn one_keep_alive_connection_carries_many_decisions() {
    let live = live();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, Arc::clone(&live), async {
        let _ = stopped.await;
    }));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    for k in 0..50u64 {
        let i = 1 + k % 3;
        let uri = format!("/v1/rta?campaign=C123&device_md5={}", d(i).to_hex());
        let req = Request::builder()
            .uri(uri)
            .header(header::HOST, addr.to_string())
            .body(http_body_util::Empty::<axum::body::Bytes>::new())
            .unwrap();
        sender.ready().await.unwrap();
        let r = sender.send_request(req).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["bid"], i == 2, "user {i}");
    }
    // A malformed query on the same connection is a 400, and the connection lives on.
    let req = Request::builder()
        .uri("/v1/rta?campaign=C123&device_md5=nothex")
        .header(header::HOST, addr.to_string())
        .body(http_body_util::Empty::<axum::body::Bytes>::new())
        .unwrap();
    sender.ready().await.unwrap();
    assert_eq!(
        sender.send_request(req).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    assert!(!sender.is_closed());
    drop(sender);
    let _ = conn.await;
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the query, the answer is a decision, a 400 or a 404: never a panic.
    #[test]
    fn any_query_gets_an_answer(q in "[a-z_=&%0-9A-F.~-]{0,80}") {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let live = live();
        let a = runtime.block_on(get(&live, "GET", &format!("/v1/rta?{q}")));
        prop_assert!(
            [StatusCode::OK, StatusCode::BAD_REQUEST, StatusCode::NOT_FOUND].contains(&a.status),
            "{} for {}", a.status, q
        );
    }
}
