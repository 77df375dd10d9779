//! Three nodes on loopback match the synthetic world over the network — mutual TLS,
//! signed contract, each party re-blinding the others' batches through its API — and
//! find exactly what local mode finds and truth.json says is linkable.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::time::Duration;

use jingteng_node::contract::{self};
use jingteng_node::{NodeDir, RunStatus, get_from_peer, import, init, post_to_peer, serve};
use tokio::net::TcpListener;

async fn node(root: &Path, party: &str) -> (NodeDir, TcpListener) {
    let dir = root.join(party);
    init(&dir, party).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let cfg = dir.join("node.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("127.0.0.1:7443", &addr);
    std::fs::write(&cfg, text).unwrap();
    (NodeDir::open(&dir).unwrap(), listener)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_match_like_local_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let world = tmp.path().join("world");
    let config = jingteng_synth::Config {
        seed: 6,
        scale: "tiny".parse().unwrap(),
        force: false,
    };
    jingteng_synth::generate(&config, &world, &|_, _| {}).unwrap();
    let spec = world.join("collab.toml");

    let (social, l_social) = node(tmp.path(), "social").await;
    let (retail, l_retail) = node(tmp.path(), "retail").await;
    let (brand, l_brand) = node(tmp.path(), "brand").await;

    // Retail proposes and will host; everyone signs; everyone records the final contract.
    let cards = vec![
        contract::card(&social).unwrap(),
        contract::card(&brand).unwrap(),
    ];
    let mut c = contract::propose(&retail, &spec, cards).unwrap();
    contract::sign(&social, &mut c).unwrap();
    let status = contract::sign(&brand, &mut c).unwrap();
    assert!(status.active);
    for n in [&social, &retail, &brand] {
        contract::record(n, &c, &status, "activate").unwrap();
    }
    // Each party imports its own identity table.
    for (n, table) in [(&social, "users"), (&retail, "users"), (&brand, "crm")] {
        import(n, &spec, table, None).unwrap();
    }

    let mut stops = Vec::new();
    let mut servers = Vec::new();
    for (party, listener) in [
        ("social", l_social),
        ("retail", l_retail),
        ("brand", l_brand),
    ] {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let dir = tmp.path().join(party);
        stops.push(stop);
        servers.push(tokio::spawn(async move {
            let n = NodeDir::open(&dir).unwrap();
            serve(&n, listener, async {
                let _ = stopped.await;
            })
            .await
        }));
    }

    let host = contract::card(&retail).unwrap();
    let (status, body) = post_to_peer(
        &retail,
        &host.endpoint,
        &host.cert_sha256,
        "/v1/collaborations/synth-6/match",
        "application/json",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let run = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["run"]
        .as_str()
        .unwrap()
        .to_string();

    // Only the host's operator starts a match at the host.
    let (status, _) = post_to_peer(
        &social,
        &host.endpoint,
        &host.cert_sha256,
        "/v1/collaborations/synth-6/match",
        "application/json",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(status, 403);

    // A member that is not the spec's host cannot have others send it their join keys.
    let b = contract::card(&brand).unwrap();
    let (status, body) = post_to_peer(
        &social,
        &b.endpoint,
        &b.cert_sha256,
        "/v1/collaborations/synth-6/match/x/contribute",
        "application/json",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(status, 403);
    assert!(String::from_utf8_lossy(&body).contains("urn:jingteng:error:not-the-host"));

    // Any member (here social) follows the run and receives the report.
    let path = format!("/v1/collaborations/synth-6/match/{run}");
    let mut done = None;
    for _ in 0..600 {
        let (status, body) = get_from_peer(&social, &host.endpoint, &host.cert_sha256, &path)
            .await
            .unwrap();
        assert_eq!(status, 200);
        let s: RunStatus = serde_json::from_slice(&body).unwrap();
        assert!(s.error.is_none(), "{:?}", s.error);
        if s.state == "done" {
            done = s.report;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let report = done.expect("the match finished");

    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(world.join("truth.json")).unwrap()).unwrap();
    let local =
        serde_json::to_value(jingteng_match::run(&spec, &|_: &str, _: u64| {}).unwrap()).unwrap();
    for (key, t) in truth["overlap"].as_object().unwrap() {
        assert_eq!(
            report["overlap"][key]["matched"], t["linkable"],
            "overlap.{key}"
        );
        assert_eq!(
            report["overlap"][key], local["overlap"][key],
            "overlap.{key} vs local mode"
        );
    }
    assert_eq!(report["identifiers"], local["identifiers"]);

    // The host audited the match and kept it as a finished job.
    let catalog = retail.catalog().unwrap();
    assert!(
        catalog
            .audit_entries()
            .unwrap()
            .iter()
            .any(|e| e.action == "match")
    );
    let jobs = catalog.jobs().unwrap();
    assert_eq!(
        (jobs.len(), jobs[0].kind.as_str(), jobs[0].state.as_str()),
        (1, "match", "done")
    );

    for s in stops {
        s.send(()).unwrap();
    }
    for s in servers {
        s.await.unwrap().unwrap();
    }
}
