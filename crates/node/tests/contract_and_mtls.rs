//! Contracts are signed by every member before anything runs; nodes accept only peers
//! whose certificates an active contract pins, and know who is calling.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use jingteng_node::contract::{self, Contract};
use jingteng_node::{NodeDir, PSI_BATCH_TYPE, get_from_peer, init, post_to_peer, serve};
use jingteng_psi::{BlindedBatch, Channel, DigestKind, Party, SecretKey};

const SPEC: &str = r#"
[collaboration]
id = "pilot"
[[party]]
name = "social"
[[party.table]]
name = "users"
path = "social.csv"
record_id = "id"
[[party.table.identifier]]
column = "phone"
type = "phone"
[[party]]
name = "retail"
[[party.table]]
name = "users"
path = "retail.csv"
record_id = "id"
[[party.table.identifier]]
column = "phone"
type = "phone"
"#;

fn node(root: &Path, party: &str) -> NodeDir {
    init(&root.join(party), party).unwrap();
    NodeDir::open(&root.join(party)).unwrap()
}

/// Social proposes, retail signs: both record an active contract.
fn signed_pair(root: &Path) -> (NodeDir, NodeDir, Contract) {
    let social = node(root, "social");
    let retail = node(root, "retail");
    let spec = root.join("collab.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let mut c = contract::propose(&social, &spec, vec![contract::card(&retail).unwrap()]).unwrap();
    let s = c.status().unwrap();
    assert_eq!(
        (s.signed.clone(), s.pending.clone(), s.active),
        (vec!["social".into()], vec!["retail".into()], false)
    );
    let s = contract::sign(&retail, &mut c).unwrap();
    assert!(s.active, "{s:?}");
    contract::record(&social, &c, &s, "activate").unwrap();
    (social, retail, c)
}

type Server = tokio::task::JoinHandle<jingteng_node::Result<()>>;

/// Serves the node at `dir` on a free loopback port: its address, a stop switch, the task.
async fn serve_on_loopback(
    dir: std::path::PathBuf,
) -> (String, tokio::sync::oneshot::Sender<()>, Server) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let node = NodeDir::open(&dir).unwrap();
        serve(&node, listener, async {
            let _ = stopped.await;
        })
        .await
    });
    (addr, stop, server)
}

#[test]
fn every_member_signs_and_a_changed_contract_voids_signatures() {
    let tmp = tempfile::tempdir().unwrap();
    let (social, _retail, c) = signed_pair(tmp.path());
    assert!(c.status().unwrap().active);

    // Edit the body after signing: every signature fails, naming the member.
    let mut tampered = c.clone();
    tampered.body = tampered.body.replace("pilot", "pilot2");
    let err = tampered.status().unwrap_err().to_string();
    assert!(
        err.contains("signature") && err.contains("does not verify"),
        "{err}"
    );

    // A non-member cannot sign; a stranger's signature is refused.
    let stranger = node(tmp.path(), "stranger");
    let mut c2 = c.clone();
    let err = contract::sign(&stranger, &mut c2).unwrap_err().to_string();
    assert!(err.contains("not a member"), "{err}");
    c2.signatures.insert("stranger".into(), "00".repeat(64));
    assert!(
        c2.status()
            .unwrap_err()
            .to_string()
            .contains("not a member")
    );

    // Both nodes audited their part.
    let audit = social.catalog().unwrap().audit_entries().unwrap();
    assert!(audit.iter().any(|e| e.action == "sign"));
    assert!(audit.iter().any(|e| e.action == "activate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_contract_members_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (social, retail, _c) = signed_pair(tmp.path());
    let stranger = node(tmp.path(), "stranger");

    let (addr, stop, server) = serve_on_loopback(tmp.path().join("retail")).await;
    let retail_cert = contract::card(&retail).unwrap().cert_sha256;

    // A member, pinning retail's certificate: authenticated, and known by party.
    let (status, body) = get_from_peer(&social, &addr, &retail_cert, "/v1/whoami")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["you"], "social");
    let (status, body) = get_from_peer(&social, &addr, &retail_cert, "/v1/health")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (v["party"].as_str(), v["api"].as_str()),
        (Some("retail"), Some("jingteng/v1"))
    );
    let (status, body) = get_from_peer(&social, &addr, &retail_cert, "/v2/anything")
        .await
        .unwrap();
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("urn:jingteng:error:not-found"));

    // A node in no contract with retail is refused during the handshake.
    let refused = get_from_peer(&stranger, &addr, &retail_cert, "/v1/health").await;
    assert!(refused.is_err(), "a stranger got in: {refused:?}");

    // A member pinning the wrong certificate refuses to talk to the server.
    let wrong = contract::card(&stranger).unwrap().cert_sha256;
    let err = get_from_peer(&social, &addr, &wrong, "/v1/health")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("TLS handshake failed"), "{err}");

    // Graceful shutdown.
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "still listening"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_re_blinds_through_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let (social, retail, _c) = signed_pair(tmp.path());
    let (addr, stop, server) = serve_on_loopback(tmp.path().join("retail")).await;
    let cert = contract::card(&retail).unwrap().cert_sha256;

    // Social blinds its values, retail re-blinds them remotely: equal values give equal
    // join keys across batches, because retail keeps one key per collaboration.
    let mine = Party::new(SecretKey::random(
        &mut <rand_chacha::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(3),
    ));
    let channel = Channel::new("pilot", "phone/sha256");
    let digests = |vals: &[&str]| -> Vec<_> {
        vals.iter()
            .map(|v| DigestKind::Sha256.hash(v.as_bytes()))
            .collect()
    };
    let mut rng = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(4);
    let mut keys = Vec::new();
    for vals in [&["13800138000", "13900139000"][..], &["13900139000"][..]] {
        let (pending, batch) = mine.blind(&channel, &digests(vals), &mut rng).unwrap();
        let (status, body) = post_to_peer(
            &social,
            &addr,
            &cert,
            "/v1/collaborations/pilot/psi/reblind",
            PSI_BATCH_TYPE,
            batch.encode(),
        )
        .await
        .unwrap();
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        keys.push(
            mine.finish(pending, &BlindedBatch::decode(&body).unwrap())
                .unwrap(),
        );
    }
    assert_eq!(keys[0][1], keys[1][0]);
    assert_ne!(keys[0][0], keys[0][1]);

    // Garbage is a 400 that says what is wrong; an unknown collaboration is a 404.
    let (status, body) = post_to_peer(
        &social,
        &addr,
        &cert,
        "/v1/collaborations/pilot/psi/reblind",
        PSI_BATCH_TYPE,
        b"JTB1\0\0\0\x01short".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(status, 400);
    assert!(
        String::from_utf8_lossy(&body).contains("truncated"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let bad_point =
        BlindedBatch::decode(&[b"JTB1\0\0\0\x01".as_slice(), &[0xff; 32]].concat()).unwrap();
    let (status, body) = post_to_peer(
        &social,
        &addr,
        &cert,
        "/v1/collaborations/pilot/psi/reblind",
        PSI_BATCH_TYPE,
        bad_point.encode(),
    )
    .await
    .unwrap();
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("invalid group element"));
    let (status, _) = post_to_peer(
        &social,
        &addr,
        &cert,
        "/v1/collaborations/other/psi/reblind",
        PSI_BATCH_TYPE,
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(status, 404);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
