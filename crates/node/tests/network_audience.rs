//! Audiences across three nodes on loopback: the brand defines an audience at the host
//! (retail), the host evaluates it on its joined view and releases only its size, and
//! on delivery the media party (social) receives only its own rows, which it turns into
//! its own user ids — the same ids as the plaintext rules over the raw files,
//! restricted to the people the match linked. Nothing row-level reaches anyone else;
//! an opt-out recorded at the media node leaves the next version.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jingteng_node::contract;
use jingteng_node::{
    ActivationBatch, ActivationHeader, CreateAudience, DeliverAudience, NodeDir, RunStatus,
    get_from_peer, import, init, post_to_peer, serve,
};
use tokio::net::TcpListener;

fn import_all(n: &NodeDir, spec: &Path) {
    let collab = jingteng_match::read_spec(spec).unwrap();
    let party = collab
        .parties()
        .iter()
        .find(|p| p.name == n.config().party)
        .unwrap();
    for t in party.all_tables() {
        import(n, spec, &t.name, None).unwrap();
    }
}

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

fn csv(root: &Path, rel: &str) -> Vec<HashMap<String, String>> {
    let mut r = csv::Reader::from_path(root.join(rel)).unwrap();
    let headers: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records()
        .map(|rec| {
            headers
                .iter()
                .cloned()
                .zip(rec.unwrap().iter().map(String::from))
                .collect()
        })
        .collect()
}

/// A party's record id → person, as a local-mode build of the same spec linked them
/// (local and networked views number people alike).
fn linkage(state: &Path, party: &str) -> HashMap<String, u64> {
    use jingteng_engine::datafusion::arrow::array::AsArray;
    use jingteng_engine::datafusion::arrow::datatypes::UInt64Type;
    use jingteng_engine::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let f = std::fs::File::open(jingteng_engine::view::records_path(state, party)).unwrap();
    let mut out = HashMap::new();
    for b in ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
    {
        let b = b.unwrap();
        let ids = b.column(0).as_string::<i32>();
        let ps = b.column(1).as_primitive::<UInt64Type>();
        for i in 0..b.num_rows() {
            out.insert(ids.value(i).to_string(), ps.value(i));
        }
    }
    out
}

/// `2026-03-24T09:21:39+08:00` → Unix seconds (the synthetic world writes +08:00).
fn epoch(ts: &str) -> i64 {
    let (date, rest) = ts.split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let t: Vec<i64> = rest[..8].split(':').map(|x| x.parse().unwrap()).collect();
    assert_eq!(&rest[8..], "+08:00");
    let (y, m, day) = (d[0], d[1], d[2]);
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + t[0] * 3_600 + t[1] * 60 + t[2] - 8 * 3_600
}

/// End of 2026-06-30 in +08:00.
const AS_OF: i64 = 1_782_835_200;

const INCLUDE: [&str; 2] = [
    "retail.orders.category = 'hair_care' AND ts within 120 days",
    "social.users.age_band IN ('18-24', '25-34') OR social.users.interest = 'beauty'",
];

fn definition(name: &str, min_size: u64) -> jingteng_audience::DefinitionFile {
    jingteng_audience::DefinitionFile {
        name: name.into(),
        description: "hair care lately, young or into beauty, not a brand customer".into(),
        activate: "social".into(),
        include: INCLUDE.iter().map(|s| s.to_string()).collect(),
        exclude: vec!["brand.crm".into()],
        min_size: Some(min_size),
        as_of: Some("2026-06-30".into()),
        lookalike: None,
    }
}

/// The same rules over the raw CSV files in plain Rust, people as the match linked
/// them: social user ids.
fn reference(world: &Path, local: &Path) -> BTreeSet<String> {
    let social = linkage(local, "social");
    let retail = linkage(local, "retail");
    let brand = linkage(local, "brand");
    let from = AS_OF - 120 * 86_400;
    let bought: HashSet<u64> = csv(world, "retail/orders.csv")
        .iter()
        .filter(|o| o["category"] == "hair_care")
        .filter(|o| {
            let t = epoch(&o["ts"]);
            t >= from && t < AS_OF
        })
        .filter_map(|o| retail.get(&o["member_id"]).copied())
        .collect();
    let customers: HashSet<u64> = csv(world, "brand/crm.csv")
        .iter()
        .filter_map(|c| brand.get(&c["customer_id"]).copied())
        .collect();
    csv(world, "social/users.csv")
        .iter()
        .filter(|u| {
            matches!(u["age_band"].as_str(), "18-24" | "25-34") || u["interest"] == "beauty"
        })
        .filter_map(|u| {
            let p = social.get(&u["user_id"])?;
            (bought.contains(p) && !customers.contains(p)).then(|| u["user_id"].clone())
        })
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_audience_defined_at_the_host_reaches_only_the_media_node_as_its_own_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let world = tmp.path().join("world");
    let config = jingteng_synth::Config {
        seed: 11,
        scale: "tiny".parse().unwrap(),
        force: false,
        media: 1,
    };
    jingteng_synth::generate(&config, &world, &|_, _| {}).unwrap();
    let spec = world.join("collab.toml");
    let id = "synth-11";

    let (social, l_social) = node(tmp.path(), "social").await;
    let (retail, l_retail) = node(tmp.path(), "retail").await;
    let (brand, l_brand) = node(tmp.path(), "brand").await;
    let cards = vec![
        contract::card(&social).unwrap(),
        contract::card(&brand).unwrap(),
    ];
    let mut c = contract::propose(&retail, &spec, cards).unwrap();
    contract::sign(&social, &mut c).unwrap();
    let status = contract::sign(&brand, &mut c).unwrap();
    for n in [&social, &retail, &brand] {
        contract::record(n, &c, &status, "activate").unwrap();
        import_all(n, &spec);
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

    // Before any match the host has no view to evaluate on.
    let req = CreateAudience {
        definition: definition("hair-care-young", 1),
        analyst: "alice".into(),
    };
    match jingteng_node::audience_create(&brand, id, &req).await {
        Err(jingteng_node::Error::Remote { code, .. }) => assert_eq!(code, "no-view"),
        other => panic!("{other:?}"),
    }

    // The match, at the host.
    let host = contract::card(&retail).unwrap();
    let (st, body) = post_to_peer(
        &retail,
        &host.endpoint,
        &host.cert_sha256,
        &format!("/v1/collaborations/{id}/match"),
        "application/json",
        vec![],
    )
    .await
    .unwrap();
    assert_eq!(st, 202, "{}", String::from_utf8_lossy(&body));
    let run = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["run"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v1/collaborations/{id}/match/{run}");
    let mut done = false;
    for _ in 0..600 {
        let (_, body) = get_from_peer(&retail, &host.endpoint, &host.cert_sha256, &path)
            .await
            .unwrap();
        let s: RunStatus = serde_json::from_slice(&body).unwrap();
        assert!(s.error.is_none(), "{:?}", s.error);
        if s.state == "done" {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(done, "the match finished");

    // The brand defines the audience at the host: only its size comes back, under DP,
    // charged to brand:alice.
    let created = jingteng_node::audience_create(&brand, id, &req)
        .await
        .unwrap();
    assert_eq!(
        (created.owner.as_str(), created.activate.as_str()),
        ("brand", "social")
    );
    assert_eq!(created.size.release.mode, "dp");
    assert!(created.size.budget_remaining.unwrap() < 10.0);
    assert_eq!(created.rules.len(), 3);

    // Under its minimum: refused with the size class only.
    let small = CreateAudience {
        definition: definition("too-small", 1_000_000),
        analyst: "alice".into(),
    };
    let too_small = match jingteng_node::audience_create(&brand, id, &small).await {
        Err(jingteng_node::Error::Remote { code, detail, .. }) => {
            assert_eq!(code, "audience-too-small");
            assert!(detail.contains("fewer than 1,000,000"), "{detail}");
            detail
        }
        other => panic!("{other:?}"),
    };
    // A rule over an identifier: refused by the policy layer, by name.
    let mut bad = definition("by-phone", 1);
    bad.include = vec!["social.users.phone_md5 = 'x'".into()];
    match jingteng_node::audience_create(
        &brand,
        id,
        &CreateAudience {
            definition: bad,
            analyst: "alice".into(),
        },
    )
    .await
    {
        Err(jingteng_node::Error::Remote { code, detail, .. }) => {
            assert_eq!(code, "refused", "{detail}");
            assert!(detail.contains("identifier"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    // Another member cannot take over the brand's audience.
    match jingteng_node::audience_create(&social, id, &req).await {
        Err(jingteng_node::Error::Remote { code, .. }) => assert_eq!(code, "not-the-owner"),
        other => panic!("{other:?}"),
    }

    // Delivery: the media node receives its own user ids.
    let deliver = DeliverAudience {
        analyst: "alice".into(),
    };
    let d1 = jingteng_node::audience_deliver(&brand, id, "hair-care-young", &deliver)
        .await
        .unwrap();
    assert_eq!((d1.record.version, d1.record.to.as_str()), (1, "social"));
    assert!(
        social.dir().join(&d1.record.file).exists(),
        "{}",
        d1.record.file
    );
    let got: BTreeSet<String> = jingteng_node::delivered_ids(&social, id, "hair-care-young", 1)
        .unwrap()
        .into_iter()
        .collect();
    let local = tmp.path().join("local");
    jingteng_engine::view::build_local(&spec, &local, std::sync::Arc::new(|_: &str, _: u64| {}))
        .await
        .unwrap();
    let want = reference(&world, &local);
    assert!(want.len() > 20, "a meaningful audience: {}", want.len());
    assert_eq!(got, want);
    // The refusal of the same rules under a higher minimum did not say this size.
    assert!(!too_small.contains(&want.len().to_string()), "{too_small}");
    let held = jingteng_node::delivered_here(&social, id).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].1[0].users, want.len() as u64);

    // Nothing row-level anywhere else: the brand holds no audience files, and the host
    // holds only the definition, its owner and the versions (sizes released, no ids).
    assert!(files_under(&jingteng_node::audiences_dir(brand.dir(), id)).is_empty());
    let at_host: Vec<String> = files_under(&jingteng_node::audiences_dir(retail.dir(), id))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    let mut names = at_host.clone();
    names.sort();
    assert_eq!(names, ["definition.toml", "owner.json", "versions.json"]);
    let versions = std::fs::read_to_string(
        jingteng_node::audiences_dir(retail.dir(), id)
            .join("audiences/hair-care-young/versions.json"),
    )
    .unwrap();
    assert!(want.iter().all(|u| !versions.contains(u.as_str())));

    // Members list and show the audience through the host.
    let listed = jingteng_node::audience_list(&social, id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].versions.len(), 1);
    let shown = jingteng_node::audience_show(&brand, id, "hair-care-young")
        .await
        .unwrap();
    assert_eq!(shown.definition.include.len(), 2);

    // A user opts out at the media node: out of the next version.
    let gone = want.iter().next().unwrap().clone();
    social
        .catalog()
        .unwrap()
        .record_forget(id, "social", &gone, "opt-out")
        .unwrap();
    let d2 = jingteng_node::audience_deliver(&brand, id, "hair-care-young", &deliver)
        .await
        .unwrap();
    assert_eq!(d2.record.version, 2);
    let got2: BTreeSet<String> = jingteng_node::delivered_ids(&social, id, "hair-care-young", 2)
        .unwrap()
        .into_iter()
        .collect();
    let mut want2 = want.clone();
    want2.remove(&gone);
    assert_eq!(got2, want2);
    // Version 1 is kept as delivered.
    assert_eq!(
        jingteng_node::delivered_ids(&social, id, "hair-care-young", 1)
            .unwrap()
            .len(),
        want.len()
    );

    // A deletion at the media node also rewrites the versions it already holds.
    let deleted = want2.iter().next().unwrap().clone();
    let out =
        jingteng_node::forget_here(&social, id, &deleted, jingteng_audience::ForgetKind::Delete)
            .unwrap();
    assert_eq!(out.removed_from_delivered_versions, 2);
    for v in [1, 2] {
        let ids = jingteng_node::delivered_ids(&social, id, "hair-care-young", v).unwrap();
        assert!(!ids.contains(&deleted), "version {v}");
    }
    assert_eq!(
        jingteng_node::delivered_ids(&social, id, "hair-care-young", 1)
            .unwrap()
            .len(),
        want.len() - 1
    );

    // Only the host delivers to the media node, and it refuses malformed messages.
    let media = contract::card(&social).unwrap();
    let batch = ActivationBatch {
        header: ActivationHeader {
            collaboration: id.into(),
            audience: "forged".into(),
            version: 1,
            records: 10,
            view: "x".into(),
            created_ms: 0,
        },
        rows: vec![1, 2],
    };
    let path = format!("/v1/collaborations/{id}/activate");
    let (st, body) = post_to_peer(
        &brand,
        &media.endpoint,
        &media.cert_sha256,
        &path,
        jingteng_node::ACTIVATION_TYPE,
        batch.encode().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(st, 403, "{}", String::from_utf8_lossy(&body));
    let (st, body) = post_to_peer(
        &retail,
        &media.endpoint,
        &media.cert_sha256,
        &path,
        jingteng_node::ACTIVATION_TYPE,
        b"JTAR\x01\xff\xff\xff\xff".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(st, 400);
    assert!(String::from_utf8_lossy(&body).contains("bad-delivery"));
    // A host's message about another identity table than the one imported: refused.
    let (st, body) = post_to_peer(
        &retail,
        &media.endpoint,
        &media.cert_sha256,
        &path,
        jingteng_node::ACTIVATION_TYPE,
        batch.encode().unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(st, 409, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("identity-changed"));

    // Audited at each end, without ids.
    let host_log = retail.catalog().unwrap().audit_entries().unwrap();
    assert!(
        host_log
            .iter()
            .any(|e| e.action == "audience-create" && e.actor == "brand")
    );
    assert!(host_log.iter().any(|e| e.action == "audience-deliver"));
    let media_log = social.catalog().unwrap().audit_entries().unwrap();
    let received: Vec<_> = media_log
        .iter()
        .filter(|e| e.action == "audience-receive")
        .collect();
    assert_eq!(received.len(), 2);
    assert!(received.iter().all(|e| !e.details.contains(&gone)));

    for s in stops {
        s.send(()).unwrap();
    }
    for s in servers {
        s.await.unwrap().unwrap();
    }
}
