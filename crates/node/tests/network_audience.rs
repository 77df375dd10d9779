//! Audiences across three nodes on loopback: the brand defines an audience at the host
//! (retail), the host evaluates it on its joined view and releases only its size, and
//! on delivery the media party (social) receives only its own rows, which it turns into
//! its own user ids — the same ids as the plaintext rules over the raw files,
//! restricted to the people the match linked. Nothing row-level reaches anyone else;
//! an opt-out recorded at the media node leaves the next version. An audience with a
//! refresh interval is delivered again by the host's scheduler on its own, and a
//! failing refresh is retried without hurting the host. A look-alike audience between
//! nodes is its seed plus exactly `size` media users, the same set as local mode's.
//!
//! RTA between nodes: on delivery the media node sends the brand (the audience's owner)
//! the device tokens of the version's users; the brand's RTA index, in process and
//! over HTTP, bids for exactly those tokens; a forget at the media node suppresses the
//! user's token at once and in later versions; forged and malformed token messages are
//! refused with typed errors.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use jingteng_audience::rta::{DeviceMd5, LiveIndex, RtaKey};
use jingteng_node::contract;
use jingteng_node::{
    ActivationBatch, ActivationHeader, CreateAudience, DeliverAudience, NodeDir, RetryPolicy,
    RunStatus, ServeOptions, TokenHeader, TokenKind, TokenList, get_from_peer, import, init,
    post_to_peer, serve_with,
};
use tokio::net::TcpListener;

const AUDIENCE: &str = "hair-care-young";

/// The social users' device MD5s (those with a valid device id), from the raw file.
fn devices(world: &Path) -> HashMap<String, DeviceMd5> {
    csv(world, "social/users.csv")
        .iter()
        .filter_map(|u| {
            let kind = jingteng_psi::DeviceType::parse(&u["device_type"])?;
            let md5 = DeviceMd5::of_device(kind, &u["device_id"]).ok()?;
            Some((u["user_id"].clone(), md5))
        })
        .collect()
}

/// Whether the owner's live index bids for `token` on the audience's campaign.
fn bids(live: &LiveIndex, token: DeviceMd5) -> bool {
    live.load().decide(AUDIENCE, token).unwrap().bid()
}

/// One RTA request over HTTP/1.1 to `addr`: the JSON answer.
async fn rta_get(addr: std::net::SocketAddr, token: DeviceMd5) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /v1/rta?campaign={AUDIENCE}&device_md5={} HTTP/1.1\r\nHost: rta\r\nConnection: close\r\n\r\n",
        token.to_hex()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}

/// Posts a token message to `to`'s RTA endpoint as `from`: status and problem code.
async fn post_tokens(
    from: &NodeDir,
    to: &NodeDir,
    id: &str,
    path_audience: &str,
    body: Vec<u8>,
) -> (u16, String) {
    let card = contract::card(to).unwrap();
    let (st, answer) = post_to_peer(
        from,
        &card.endpoint,
        &card.cert_sha256,
        &format!("/v1/collaborations/{id}/rta/{path_audience}"),
        jingteng_node::RTA_TOKENS_TYPE,
        body,
    )
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
    let code = v["type"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches("urn:jingteng:error:")
        .to_string();
    (st, code)
}

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
        refresh: None,
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

/// Three nodes on loopback (social, the media party; retail, the host; brand) with a
/// signed contract over a synthetic world, each serving.
struct Net {
    tmp: tempfile::TempDir,
    world: PathBuf,
    spec: PathBuf,
    id: String,
    social: NodeDir,
    retail: NodeDir,
    brand: NodeDir,
    addrs: HashMap<&'static str, String>,
    stops: HashMap<&'static str, tokio::sync::oneshot::Sender<()>>,
    servers: HashMap<&'static str, tokio::task::JoinHandle<jingteng_node::Result<()>>>,
    options: HashMap<&'static str, ServeOptions>,
}

impl Net {
    /// A world of `people` (a scale: `tiny` or a number) from `seed`; the host serves
    /// with `host`.
    async fn start(seed: u64, people: &str, host: ServeOptions) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let world = tmp.path().join("world");
        let config = jingteng_synth::Config {
            seed,
            scale: people.parse().unwrap(),
            force: false,
            media: 1,
        };
        jingteng_synth::generate(&config, &world, &|_, _| {}).unwrap();
        let spec = world.join("collab.toml");
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
        let mut net = Net {
            id: format!("synth-{seed}"),
            world,
            spec,
            social,
            retail,
            brand,
            addrs: HashMap::new(),
            stops: HashMap::new(),
            servers: HashMap::new(),
            options: HashMap::new(),
            tmp,
        };
        net.options.insert("retail", host);
        for (party, listener) in [
            ("social", l_social),
            ("retail", l_retail),
            ("brand", l_brand),
        ] {
            net.addrs
                .insert(party, listener.local_addr().unwrap().to_string());
            net.serve(party, listener);
        }
        net
    }

    fn serve(&mut self, party: &'static str, listener: TcpListener) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let dir = self.tmp.path().join(party);
        let options = self.options.get(party).cloned().unwrap_or_default();
        self.stops.insert(party, stop);
        self.servers.insert(
            party,
            tokio::spawn(async move {
                let n = NodeDir::open(&dir).unwrap();
                serve_with(
                    &n,
                    listener,
                    async {
                        let _ = stopped.await;
                    },
                    options,
                )
                .await
            }),
        );
    }

    /// Stops a node gracefully; its `serve` must end without error.
    async fn stop(&mut self, party: &'static str) {
        self.stops.remove(party).unwrap().send(()).unwrap();
        let server = self.servers.remove(party).unwrap();
        tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .expect("the node stops within 20 s")
            .unwrap()
            .unwrap();
    }

    /// Serves a stopped node again on its address.
    async fn restart(&mut self, party: &'static str) {
        let listener = TcpListener::bind(&self.addrs[party]).await.unwrap();
        self.serve(party, listener);
    }

    async fn shutdown(mut self) {
        for party in ["social", "retail", "brand"] {
            if self.stops.contains_key(party) {
                self.stop(party).await;
            }
        }
    }

    /// The networked match, run at the host.
    async fn run_match(&self) {
        let (retail, id) = (&self.retail, self.id.as_str());
        // The match, at the host.
        let host = contract::card(retail).unwrap();
        let (st, body) = post_to_peer(
            retail,
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
            let (_, body) = get_from_peer(retail, &host.endpoint, &host.cert_sha256, &path)
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
    }

    /// The joined view built in local mode from the same files (its linkage numbers
    /// people as the networked view does).
    async fn local_view(&self) -> PathBuf {
        let local = self.tmp.path().join("local");
        jingteng_engine::view::build_local(&self.spec, &local, Arc::new(|_: &str, _: u64| {}))
            .await
            .unwrap();
        local
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_audience_defined_at_the_host_reaches_only_the_media_node_as_its_own_ids() {
    let mut net = Net::start(11, "tiny", ServeOptions::default()).await;
    // The brand serves an RTA index of the token lists it receives, over HTTP too.
    let live = jingteng_node::rta_live_index(&net.brand).unwrap();
    net.stop("brand").await;
    let mut options = ServeOptions::default();
    options.rta = Some(live.clone());
    net.options.insert("brand", options);
    net.restart("brand").await;
    let rta_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rta_addr = rta_listener.local_addr().unwrap();
    let (rta_stop, rta_stopped) = tokio::sync::oneshot::channel::<()>();
    let rta_server = tokio::spawn(jingteng_audience::rta::serve(
        rta_listener,
        live.clone(),
        async {
            let _ = rta_stopped.await;
        },
    ));
    // Handles of their own: `net` stops and restarts nodes below.
    let open = |party: &str| NodeDir::open(&net.tmp.path().join(party)).unwrap();
    let (social, retail, brand) = (open("social"), open("retail"), open("brand"));
    let (world, id) = (net.world.clone(), net.id.clone());
    let id = id.as_str();

    // Before any match the host has no view to evaluate on.
    let req = CreateAudience {
        definition: definition("hair-care-young", 1),
        analyst: "alice".into(),
    };
    match jingteng_node::audience_create(&brand, id, &req).await {
        Err(jingteng_node::Error::Remote { code, .. }) => assert_eq!(code, "no-view"),
        other => panic!("{other:?}"),
    }

    net.run_match().await;

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
    let local = net.local_view().await;
    let want = reference(&world, &local);
    assert!(want.len() > 20, "a meaningful audience: {}", want.len());
    assert_eq!(got, want);
    // The refusal of the same rules under a higher minimum did not say this size.
    assert!(!too_small.contains(&want.len().to_string()), "{too_small}");
    let held = jingteng_node::delivered_here(&social, id).unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].1[0].users, want.len() as u64);

    // RTA: the media node sent the brand, the audience's owner, the version's device
    // tokens; the brand's index bids for exactly the audience's users with a device id.
    assert_eq!(
        d1.rta,
        Some(jingteng_node::RtaPush {
            owner: "brand".into(),
            pushed: true,
            detail: None
        })
    );
    let dev = devices(&world);
    let token = |u: &str| jingteng_node::rta_token(&social, dev[u]).unwrap();
    let in_audience: Vec<&String> = want.iter().filter(|u| dev.contains_key(*u)).collect();
    // Users not in the audience, on a device none of its users has (a device may be
    // shared: RTA decides per device).
    let audience_devices: HashSet<DeviceMd5> = in_audience.iter().map(|u| dev[*u]).collect();
    let strangers: Vec<&String> = dev
        .iter()
        .filter(|(u, m)| !want.contains(*u) && !audience_devices.contains(*m))
        .map(|(u, _)| u)
        .collect();
    assert!(in_audience.len() > 10 && strangers.len() > 10);
    for u in &in_audience {
        assert!(bids(&live, token(u)), "a user of the audience");
        // The MD5 itself means nothing to the owner: only the token does.
        assert!(!bids(&live, dev[*u]));
    }
    for u in &strangers {
        assert!(!bids(&live, token(u)), "a user not in the audience");
    }
    let answer = rta_get(rta_addr, token(in_audience[0])).await;
    assert_eq!(answer, serde_json::json!({"bid": true, "multiplier": 1.0}));
    let answer = rta_get(rta_addr, token(strangers[0])).await;
    assert_eq!(answer, serde_json::json!({"bid": false, "multiplier": 0}));
    // The token is HMAC-SHA256 of the MD5 under the media node's own key (secrets/,
    // mode 0600), truncated to 16 bytes.
    let key_path = social.dir().join("secrets/rta.key");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let hex = std::fs::read_to_string(&key_path).unwrap();
    let key: [u8; 32] = (0..32)
        .map(|i| u8::from_str_radix(&hex.trim()[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let u = in_audience[0];
    assert_eq!(RtaKey::from_bytes(key).token(dev[u]), token(u));
    // What the brand holds: one list, from social, counts only; nobody else holds one.
    let held_rta = jingteng_node::rta_held(&brand, id).unwrap();
    assert_eq!(held_rta.len(), 1);
    assert_eq!(
        (
            held_rta[0].audience.as_str(),
            held_rta[0].from.as_str(),
            held_rta[0].version,
            held_rta[0].tokens,
            held_rta[0].suppressed
        ),
        (AUDIENCE, "social", 1, audience_devices.len() as u64, 0)
    );
    assert!(jingteng_node::rta_held(&retail, id).unwrap().is_empty());
    assert!(jingteng_node::rta_held(&social, id).unwrap().is_empty());

    // Nothing row-level anywhere else: the brand holds only the RTA token list (no ids),
    // and the host only the definition, its owner and the versions (sizes released, no
    // ids).
    let at_brand = files_under(&jingteng_node::audiences_dir(brand.dir(), id));
    let mut names: Vec<String> = at_brand
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "hair-care-young.json",
            "hair-care-young.suppressed",
            "hair-care-young.tokens"
        ]
    );
    for f in &at_brand {
        let bytes = std::fs::read(f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(want.iter().all(|u| !text.contains(u.as_str())));
    }
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

    // A user opts out at the media node: the owner suppresses their token at once (and
    // keeps it suppressed across a rebuild, as after a restart), and the next version
    // leaves them out.
    let gone = in_audience
        .iter()
        .find(|u| dev.values().filter(|m| **m == dev[**u]).count() == 1)
        .map(|u| u.to_string())
        .unwrap();
    let gone_token = token(&gone);
    let other = in_audience
        .iter()
        .find(|u| dev[**u] != dev[&gone])
        .unwrap()
        .to_string();
    jingteng_node::forget_here(&social, id, &gone, jingteng_audience::ForgetKind::OptOut).unwrap();
    let pushed = jingteng_node::forget_at_owners(&social, id, &gone)
        .await
        .unwrap();
    assert_eq!(pushed.len(), 1);
    assert_eq!(
        (pushed[0].owner.as_str(), pushed[0].pushed),
        ("brand", true)
    );
    assert!(!bids(&live, gone_token));
    assert!(bids(&live, token(&other)));
    let answer = rta_get(rta_addr, gone_token).await;
    assert_eq!(answer["bid"], false);
    let rebuilt = jingteng_node::rta_live_index(&brand).unwrap();
    assert!(!bids(&rebuilt, gone_token));
    assert!(bids(&rebuilt, token(&other)));
    assert_eq!(
        jingteng_node::rta_held(&brand, id).unwrap()[0].suppressed,
        1
    );
    let d2 = jingteng_node::audience_deliver(&brand, id, "hair-care-young", &deliver)
        .await
        .unwrap();
    assert_eq!(d2.record.version, 2);
    assert!(d2.rta.as_ref().unwrap().pushed);
    // The new list leaves the user out: still no, and no suppression needed any more.
    assert!(!bids(&live, gone_token));
    assert!(!bids(
        &jingteng_node::rta_live_index(&brand).unwrap(),
        gone_token
    ));
    let held2 = jingteng_node::rta_held(&brand, id).unwrap();
    assert_eq!(
        (held2[0].version, held2[0].tokens, held2[0].suppressed),
        (2, audience_devices.len() as u64 - 1, 0)
    );
    for u in in_audience.iter().filter(|u| **u != &gone) {
        assert!(bids(&live, token(u)));
    }

    // Token messages the brand refuses, each with a typed error, leaving its index as
    // it was: from a member that is not the audience's activation party; to a node that
    // is not its owner; malformed, truncated, over the bounds, unsorted, stale, or
    // about another audience than its path.
    let list = |version: u32, tokens: Vec<[u8; 16]>| TokenList {
        header: TokenHeader {
            collaboration: id.into(),
            audience: AUDIENCE.into(),
            version,
            kind: TokenKind::List,
        },
        tokens,
    };
    let forged = list(9, vec![gone_token.to_bytes()]).encode().unwrap();
    assert_eq!(
        post_tokens(&retail, &brand, id, AUDIENCE, forged.clone()).await,
        (403, "not-the-activation-party".to_string())
    );
    assert_eq!(
        post_tokens(&social, &retail, id, AUDIENCE, forged.clone()).await,
        (403, "not-the-owner".to_string())
    );
    assert_eq!(
        post_tokens(&social, &brand, id, "other", forged.clone()).await,
        (400, "bad-tokens".to_string())
    );
    assert_eq!(
        post_tokens(
            &social,
            &brand,
            id,
            AUDIENCE,
            forged[..forged.len() - 3].to_vec()
        )
        .await,
        (400, "bad-tokens".to_string())
    );
    let mut oversized = forged[..forged.len() - 20].to_vec();
    oversized.extend_from_slice(&(jingteng_node::MAX_RTA_TOKENS as u32 + 1).to_be_bytes());
    assert_eq!(
        post_tokens(&social, &brand, id, AUDIENCE, oversized).await,
        (400, "bad-tokens".to_string())
    );
    let unsorted = list(9, vec![[2; 16], [1; 16]]).encode().unwrap();
    assert_eq!(
        post_tokens(&social, &brand, id, AUDIENCE, unsorted).await,
        (400, "bad-tokens".to_string())
    );
    let stale = list(1, vec![gone_token.to_bytes()]).encode().unwrap();
    assert_eq!(
        post_tokens(&social, &brand, id, AUDIENCE, stale).await,
        (409, "stale-tokens".to_string())
    );
    assert!(!bids(&live, gone_token));
    assert_eq!(jingteng_node::rta_held(&brand, id).unwrap(), held2);
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
            owner: "brand".into(),
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
    // RTA steps audited at both ends, counts and names only (no ids, no tokens).
    let brand_log = brand.catalog().unwrap().audit_entries().unwrap();
    let count = |log: &[jingteng_catalog::AuditEntry], action: &str| {
        log.iter().filter(|e| e.action == action).count()
    };
    assert_eq!(count(&media_log, "rta-tokens-send"), 2);
    assert_eq!(count(&media_log, "rta-suppress-send"), 1);
    assert_eq!(count(&brand_log, "rta-tokens-receive"), 2);
    assert_eq!(count(&brand_log, "rta-suppress-receive"), 1);
    for e in media_log.iter().chain(&brand_log) {
        assert!(!e.details.contains(&gone));
        assert!(!e.details.contains(&gone_token.to_hex()));
    }

    // The owner unreachable: the delivery still succeeds, the push is reported (and
    // audited); the next delivery sends the full list again.
    net.stop("brand").await;
    let d3 = jingteng_node::audience_deliver(&brand, id, AUDIENCE, &deliver)
        .await
        .unwrap();
    assert_eq!(d3.record.version, 3);
    let push = d3.rta.unwrap();
    assert_eq!((push.owner.as_str(), push.pushed), ("brand", false));
    assert!(
        push.detail.as_deref().unwrap().contains("next delivery"),
        "{push:?}"
    );
    let media_log = social.catalog().unwrap().audit_entries().unwrap();
    let last = media_log
        .iter()
        .rfind(|e| e.action == "rta-tokens-send")
        .unwrap();
    assert!(
        last.details.contains("\"pushed\":false"),
        "{}",
        last.details
    );
    // The brand's index still holds version 2.
    assert_eq!(jingteng_node::rta_held(&brand, id).unwrap()[0].version, 2);
    rta_stop.send(()).unwrap();
    rta_server.await.unwrap().unwrap();
    net.shutdown().await;
}

/// Polls `check` every 100 ms for up to `secs` seconds.
async fn wait_for(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..secs * 10 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("waited {secs} s for {what}");
}

fn ids_at(net: &Net, name: &str, version: u32) -> BTreeSet<String> {
    jingteng_node::delivered_ids(&net.social, &net.id, name, version)
        .unwrap()
        .into_iter()
        .collect()
}

fn versions_at(net: &Net, name: &str) -> Vec<u32> {
    jingteng_node::delivered_here(&net.social, &net.id)
        .unwrap()
        .into_iter()
        .filter(|(n, _)| n == name)
        .flat_map(|(_, v)| v.into_iter().map(|v| v.version))
        .collect()
}

fn host_audit(net: &Net, action: &str) -> Vec<String> {
    net.retail
        .catalog()
        .unwrap()
        .audit_entries()
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action)
        .map(|e| e.details)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_host_refreshes_an_audience_on_its_own_and_retries_a_failed_refresh() {
    // The host looks for due audiences every 100 ms; its scheduler's clock is moved
    // forward by the test; a media node that is away fails a delivery within a second.
    let skew = Arc::new(AtomicI64::new(0));
    let mut host = ServeOptions::default();
    host.refresh_tick = Duration::from_millis(100);
    host.refresh_clock_skew_ms = skew.clone();
    host.retry = RetryPolicy {
        attempts: 2,
        first_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(100),
    };
    let mut net = Net::start(11, "tiny", host).await;
    net.run_match().await;
    let id = net.id.clone();
    let name = "hair-care-daily";

    // Refresh intervals out of bounds are refused by name.
    let mut def = definition(name, 1);
    def.refresh = Some("30s".into());
    let req = |d: &jingteng_audience::DefinitionFile| CreateAudience {
        definition: d.clone(),
        analyst: "alice".into(),
    };
    match jingteng_node::audience_create(&net.brand, &id, &req(&def)).await {
        Err(jingteng_node::Error::Remote { code, detail, .. }) => {
            assert_eq!(code, "bad-definition");
            assert!(detail.contains("refresh = \"30s\""), "{detail}");
        }
        other => panic!("{other:?}"),
    }

    // Every minute: version 1 follows the definition on its own (never delivered: due
    // at once), without any deliver call.
    def.refresh = Some("1m".into());
    let created = jingteng_node::audience_create(&net.brand, &id, &req(&def))
        .await
        .unwrap();
    assert_eq!(created.owner, "brand");
    wait_for(30, "version 1", || versions_at(&net, name) == [1]).await;
    let local = net.local_view().await;
    let want = reference(&net.world, &local);
    assert_eq!(ids_at(&net, name, 1), want);
    // Not again before a minute has passed (ten ticks).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(versions_at(&net, name), [1]);
    let listed = jingteng_node::audience_list(&net.social, &id)
        .await
        .unwrap();
    let r = listed[0].refresh.clone().expect("a refresh status");
    assert_eq!((r.every.as_str(), r.failures), ("1m", 0));
    assert_eq!(r.next_due_ms, listed[0].versions[0].created_ms + 60_000);

    // A user opts out at the media node; a minute later the scheduled version 2 leaves
    // them out.
    let gone = want.iter().next().unwrap().clone();
    net.social
        .catalog()
        .unwrap()
        .record_forget(&id, "social", &gone, "opt-out")
        .unwrap();
    skew.fetch_add(61_000, Ordering::Relaxed);
    // The media node writes a version before the host records it: wait for both.
    wait_for(30, "version 2", || {
        versions_at(&net, name) == [1, 2] && host_audit(&net, "audience-refresh").len() == 2
    })
    .await;
    let mut want2 = want.clone();
    want2.remove(&gone);
    assert_eq!(ids_at(&net, name, 2), want2);

    // The media node goes away: the next refresh fails, is recorded and audited, and
    // the host keeps serving.
    net.stop("social").await;
    skew.fetch_add(61_000, Ordering::Relaxed);
    wait_for(30, "a failed refresh", || {
        !host_audit(&net, "audience-refresh-failed").is_empty()
    })
    .await;
    let failed = host_audit(&net, "audience-refresh-failed");
    assert_eq!(failed.len(), 1);
    assert!(failed[0].contains("activation-failed"), "{}", failed[0]);
    let shown = jingteng_node::audience_show(&net.brand, &id, name)
        .await
        .unwrap();
    let r = shown.refresh.expect("a refresh status");
    assert_eq!(r.failures, 1);
    assert!(r.last_error.unwrap().contains("social"));
    assert_eq!(shown.versions.len(), 2);
    // Retried after a backoff (a minute here), not at every tick.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(host_audit(&net, "audience-refresh-failed").len(), 1);

    // Back again: the retry delivers version 3.
    net.restart("social").await;
    skew.fetch_add(61_000, Ordering::Relaxed);
    wait_for(30, "version 3", || {
        versions_at(&net, name) == [1, 2, 3] && host_audit(&net, "audience-refresh").len() == 3
    })
    .await;
    assert_eq!(ids_at(&net, name, 3), want2);
    let shown = jingteng_node::audience_show(&net.brand, &id, name)
        .await
        .unwrap();
    assert_eq!(shown.refresh.unwrap().failures, 0);

    // Audited at the host as the brand's standing order, without people.
    let refreshed = host_audit(&net, "audience-refresh");
    assert_eq!(refreshed.len(), 3);
    assert!(refreshed.iter().all(|d| d.contains("brand:alice")));
    assert!(refreshed.iter().all(|d| !d.contains(&gone)));
    // A graceful stop ends the scheduler with the server.
    net.shutdown().await;
}

/// The seed of the look-alike test in plain Rust over the raw files: social users
/// linked to a retail member who ordered food or digital goods.
fn seed_reference(world: &Path, local: &Path) -> BTreeSet<String> {
    let social = linkage(local, "social");
    let retail = linkage(local, "retail");
    let bought: HashSet<u64> = csv(world, "retail/orders.csv")
        .iter()
        .filter(|o| matches!(o["category"].as_str(), "food" | "digital"))
        .filter_map(|o| retail.get(&o["member_id"]).copied())
        .collect();
    csv(world, "social/users.csv")
        .iter()
        .filter_map(|u| {
            let p = social.get(&u["user_id"])?;
            bought.contains(p).then(|| u["user_id"].clone())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lookalike_between_nodes_is_its_seed_plus_size_media_users_as_in_local_mode() {
    // 6,000 people: about 2,500 social users in the seed, within the 2,000–30 M bounds.
    let net = Net::start(13, "6000", ServeOptions::default()).await;
    net.run_match().await;
    let id = net.id.as_str();
    let size = 500u64;
    let def = jingteng_audience::DefinitionFile {
        name: "food-digital-alike".into(),
        description: "ordered food or digital goods, and the 500 media users most like them".into(),
        activate: "social".into(),
        include: vec!["retail.orders.category IN ('food', 'digital')".into()],
        exclude: Vec::new(),
        min_size: Some(1),
        as_of: Some("2026-06-30".into()),
        refresh: None,
        lookalike: Some(jingteng_audience::LookalikeSection {
            size,
            holdout: None,
            seed: None,
        }),
    };
    let created = jingteng_node::audience_create(
        &net.brand,
        id,
        &CreateAudience {
            definition: def.clone(),
            analyst: "alice".into(),
        },
    )
    .await
    .unwrap();
    // The look-alike's figures come back to the member, never people.
    let report = created.lookalike.clone().expect("look-alike figures");
    assert_eq!((report.size, report.added), (size, size));
    assert!(!report.features.is_empty());
    assert!(report.features.iter().all(|f| !f.starts_with("orders.")));
    assert!((0.0..=1.0).contains(&report.precision), "{report:?}");
    assert!(report.base_rate > 0.0 && report.lift > 0.0, "{report:?}");

    let delivered = jingteng_node::audience_deliver(
        &net.brand,
        id,
        "food-digital-alike",
        &DeliverAudience {
            analyst: "alice".into(),
        },
    )
    .await
    .unwrap();
    let figures = delivered.record.lookalike.clone().expect("figures");
    assert_eq!(figures.added, size);
    assert_eq!(figures.precision, report.precision);

    // At the media node: the seed as the plain rules find it, and exactly `size` more
    // of its users.
    let got = ids_at(&net, "food-digital-alike", 1);
    let local = net.local_view().await;
    let seed = seed_reference(&net.world, &local);
    assert!(
        seed.len() as u64 >= jingteng_audience::SEED_BOUNDS.0,
        "seed of {} people",
        seed.len()
    );
    assert!(seed.is_subset(&got), "the seed is delivered whole");
    let added: BTreeSet<&String> = got.difference(&seed).collect();
    assert_eq!(added.len() as u64, size);
    let users: HashSet<String> = csv(&net.world, "social/users.csv")
        .into_iter()
        .map(|u| u["user_id"].clone())
        .collect();
    assert!(added.iter().all(|u| users.contains(*u)));

    // Local mode over the same files delivers the same set, with the same figures.
    let collab = jingteng_match::read_spec(&net.spec).unwrap();
    let info = jingteng_engine::view::load(&local).unwrap();
    let catalog = jingteng_catalog::Catalog::open(&local.join("catalog.sqlite")).unwrap();
    let mut engine = jingteng_engine::Engine::open(
        &collab,
        &local,
        &info,
        catalog,
        jingteng_engine::Limits::default(),
    )
    .await
    .unwrap();
    let store = jingteng_audience::Store::new(&local);
    let local_def = jingteng_audience::Definition::from_file(def).unwrap();
    let out = jingteng_audience::deliver(
        &mut engine,
        &collab,
        &local,
        &store,
        &local_def,
        "brand:alice",
        1_782_835_200,
        None,
    )
    .await
    .unwrap();
    let local_ids: BTreeSet<String> = store
        .delivered_ids(&out.record)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(local_ids, got);
    let local_figures = out.record.lookalike.unwrap();
    assert_eq!(local_figures.precision, report.precision);
    assert_eq!(local_figures.features, report.features);
    net.shutdown().await;
}
