//! Acceptance for audiences on the synthetic world:
//! - a delivered audience equals the same rules evaluated in plain Rust over the raw
//!   CSV files, mapped to the media party's user ids through the match's linkage (the
//!   clean room can only find linkable people, so that is the honest reference), and
//!   nearly all of it is right against the ground truth;
//! - an under-size audience is refused with its size class, not its size;
//! - an opted-out or deleted user is absent from the next version and gets "no" from
//!   RTA; a deletion also leaves the versions already delivered;
//! - a dataset whose consent scope lacks activation blocks delivery;
//! - look-alike: the top N are at least twice as often truly interested in the seed's
//!   category as the media users not in the seed.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use jingteng_audience::rta::DeviceMd5;
use jingteng_audience::{
    Definition, Error, ForgetKind, Store, deliver, evaluate, forget, purge_delivered, rta_index,
};
use jingteng_catalog::Catalog;
use jingteng_engine::{Engine, Limits, ViewInfo, view};

/// 2026-06-30 ends at 2026-07-01T00:00+08:00.
const AS_OF: i64 = 1_782_835_200;
const NOW: i64 = 1_790_000_000;

struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    spec: PathBuf,
    state: PathBuf,
}

fn world(seed: u64, people: u64) -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("world");
    let config = jingteng_synth::Config {
        seed,
        scale: people.to_string().parse().unwrap(),
        force: false,
        media: 1,
    };
    jingteng_synth::generate(&config, &root, &|_, _| {}).unwrap();
    let spec = root.join("collab.toml");
    let state = dir.path().join("state");
    World {
        _dir: dir,
        root,
        spec,
        state,
    }
}

impl World {
    /// Builds (or reuses) the view the way the CLI does (with the state's catalog's
    /// opt-outs and deletions) and opens the engine over it with that catalog.
    async fn engine(&self) -> (Engine, ViewInfo) {
        let info = view::build_local(&self.spec, &self.state, Arc::new(|_: &str, _: u64| {}))
            .await
            .unwrap();
        let collab = jingteng_match::read_spec(&self.spec).unwrap();
        let catalog = Catalog::open(&self.state.join("catalog.sqlite")).unwrap();
        let engine = Engine::open(&collab, &self.state, &info, catalog, Limits::default())
            .await
            .unwrap();
        (engine, info)
    }

    fn collab(&self) -> jingteng_psi::Collaboration {
        jingteng_match::read_spec(&self.spec).unwrap()
    }

    fn csv(&self, rel: &str) -> Vec<HashMap<String, String>> {
        let mut r = csv::Reader::from_path(self.root.join(rel)).unwrap();
        let headers: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
        r.records()
            .map(|rec| {
                let rec = rec.unwrap();
                headers
                    .iter()
                    .cloned()
                    .zip(rec.iter().map(String::from))
                    .collect()
            })
            .collect()
    }

    /// A party's record id → person, as the match linked them (the view build keeps it).
    fn linkage(&self, party: &str) -> HashMap<String, u64> {
        use jingteng_engine::datafusion::arrow::array::AsArray;
        use jingteng_engine::datafusion::arrow::datatypes::UInt64Type;
        use jingteng_engine::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let f = std::fs::File::open(view::records_path(&self.state, party)).unwrap();
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
}

/// `2026-03-24T09:21:39+08:00` → Unix seconds (the synthetic world's only form).
fn epoch(ts: &str) -> i64 {
    let (date, rest) = ts.split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (y, m, day) = (d[0], d[1], d[2]);
    let time = &rest[..8];
    let t: Vec<i64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    let off = &rest[8..];
    let sign = if off.starts_with('-') { -1 } else { 1 };
    let oh: i64 = off[1..3].parse().unwrap();
    let om: i64 = off[4..6].parse().unwrap();
    // Days from civil (Hinnant), written again here on purpose.
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + t[0] * 3_600 + t[1] * 60 + t[2] - sign * (oh * 3_600 + om * 60)
}

fn def(text: &str) -> Definition {
    Definition::parse_toml(text).unwrap()
}

const RULES: &str = r#"
name = "hair-care-young"
activate = "social"
include = [
  "retail.orders.category = 'hair_care' AND ts within 120 days",
  "social.users.age_band IN ('18-24', '25-34') OR social.users.interest = 'beauty'",
]
exclude = ["brand.crm"]
as_of = "2026-06-30"
min_size = 1
"#;

/// The same rules as [`RULES`], evaluated over the raw CSV files in plain Rust; people
/// are the match's (a social user, a retail member and a brand customer are the same
/// person when the match linked them). Returns social user ids.
fn reference(w: &World) -> BTreeSet<String> {
    let social = w.linkage("social");
    let retail = w.linkage("retail");
    let brand = w.linkage("brand");
    let from = AS_OF - 120 * 86_400;
    let bought: HashSet<u64> = w
        .csv("retail/orders.csv")
        .iter()
        .filter(|o| o["category"] == "hair_care")
        .filter(|o| {
            let t = epoch(&o["ts"]);
            t >= from && t < AS_OF
        })
        .filter_map(|o| retail.get(&o["member_id"]).copied())
        .collect();
    let customers: HashSet<u64> = w
        .csv("brand/crm.csv")
        .iter()
        .filter_map(|c| brand.get(&c["customer_id"]).copied())
        .collect();
    w.csv("social/users.csv")
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

#[tokio::test]
async fn a_delivered_audience_equals_the_plaintext_rules_and_the_truth() {
    let w = world(11, 6_000);
    let (mut engine, _) = w.engine().await;
    let store = Store::new(&w.state);
    let d = def(RULES);
    let out = deliver(
        &mut engine,
        &w.collab(),
        &w.state,
        &store,
        &d,
        "brand",
        NOW,
        None,
    )
    .await
    .unwrap();
    assert_eq!(out.record.version, 1);
    let got: BTreeSet<String> = store
        .delivered_ids(&out.record)
        .unwrap()
        .into_iter()
        .collect();
    let want = reference(&w);
    assert!(want.len() > 50, "a meaningful audience: {}", want.len());
    assert_eq!(got, want);
    // Every delivered id is one of the media party's own.
    assert!(got.iter().all(|id| id.starts_with("wx")));
    // Against the truth: the match never links two people, so every delivered user
    // truly bought hair care; only brand customers the match could not link slip
    // through the exclusion.
    let people = w.csv("truth/people.csv");
    let truth: HashMap<&str, &HashMap<String, String>> = people
        .iter()
        .filter(|p| !p["social_user_id"].is_empty())
        .map(|p| (p["social_user_id"].as_str(), p))
        .collect();
    let wrong = got
        .iter()
        .filter(|id| !truth[id.as_str()]["brand_customer_id"].is_empty())
        .count();
    assert!(
        wrong * 20 < got.len(),
        "{wrong} of {} are brand customers",
        got.len()
    );
    // The size went out through the engine (DP by default), charged to the brand.
    assert_eq!(out.size.release.mode, "dp");
    assert!(out.size.budget_remaining.unwrap() < 10.0);
    // A second delivery over the same view is the next version with the same people.
    let again = deliver(
        &mut engine,
        &w.collab(),
        &w.state,
        &store,
        &d,
        "brand",
        NOW,
        None,
    )
    .await
    .unwrap();
    assert_eq!(again.record.version, 2);
    let got2: BTreeSet<String> = store
        .delivered_ids(&again.record)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(got2, want);
    assert_eq!(store.versions("hair-care-young").unwrap().len(), 2);
}

#[tokio::test]
async fn an_undersized_audience_is_refused_with_its_class_only() {
    let w = world(12, 5_000);
    let (engine, _) = w.engine().await;
    let d = def(r#"
name = "tiny"
activate = "social"
include = ["retail.orders.category = 'baby' AND ts within 3 days"]
as_of = "2026-06-30"
"#);
    let err = evaluate(&engine, &d, NOW, None).await.unwrap_err();
    let Error::TooSmall { class, min, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!((class.as_str(), *min), ("fewer than 1,000", 1000));
    let msg = err.to_string();
    assert!(msg.contains("fewer than 1,000"), "{msg}");
    // No other number than the minimum is said.
    assert!(
        !msg.replace("1,000", "").chars().any(|c| c.is_ascii_digit()),
        "{msg}"
    );
    // The same rules with a minimum of 1 find someone (the refusal was about size).
    let mut d = d;
    d.set_min_size(1).unwrap();
    assert!(
        !evaluate(&engine, &d, NOW, None)
            .await
            .unwrap()
            .members()
            .is_empty()
    );
}

#[tokio::test]
async fn rules_outside_the_policy_are_refused_by_name() {
    let w = world(13, 1_000);
    let (engine, _) = w.engine().await;
    let cases = [
        ("social.users.phone_md5 = 'x'", "refused [identifier]"),
        ("social.users.person = 1", "refused [join-key]"),
        ("retail.orders.member_id = 'jd1'", "refused [identifier]"),
        (
            "social.campaigns.brand = 'Aurora'",
            "refused [not-about-people]",
        ),
        (
            "retail.orders.colour = 'red'",
            "has no allowed column \"colour\"",
        ),
        ("retail.orders.category within 3 days", "not a timestamp"),
        ("retail.shops.region = 'x'", "no table retail.shops"),
    ];
    for (rule, want) in cases {
        let d = def(&format!(
            "name = \"x\"\nactivate = \"social\"\ninclude = [\"{}\"]",
            rule.replace('"', "\\\"")
        ));
        let e = evaluate(&engine, &d, NOW, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(want) && e.contains(rule), "{rule}: {e}");
    }
}

/// Device MD5 of a social user, from the media party's own file.
fn device_md5(w: &World, user: &str) -> Option<DeviceMd5> {
    let u = w
        .csv("social/users.csv")
        .into_iter()
        .find(|u| u["user_id"] == user)?;
    let kind = jingteng_psi::DeviceType::parse(&u["device_type"])?;
    DeviceMd5::of_device(kind, &u["device_id"]).ok()
}

#[tokio::test]
async fn forgotten_people_leave_the_next_version_rta_and_the_cache() {
    let w = world(14, 6_000);
    let store = Store::new(&w.state);
    let d = def(RULES);
    let (mut engine, before) = w.engine().await;
    let v1 = deliver(
        &mut engine,
        &w.collab(),
        &w.state,
        &store,
        &d,
        "brand",
        NOW,
        None,
    )
    .await
    .unwrap();
    let ids1: Vec<String> = store.delivered_ids(&v1.record).unwrap();
    let with_device: Vec<&String> = ids1
        .iter()
        .filter(|u| device_md5(&w, u).is_some())
        .collect();
    assert!(with_device.len() >= 3);
    // One opts out at the media party; another is deleted at the retailer (by the
    // retailer's own member id, which the test finds through the truth).
    let (opted, deleted, kept) = (
        with_device[0].clone(),
        with_device[1].clone(),
        with_device[2].clone(),
    );
    let people = w.csv("truth/people.csv");
    let member = people
        .iter()
        .find(|p| p["social_user_id"] == deleted)
        .map(|p| p["retail_member_id"].clone())
        .unwrap();
    let q = "SELECT COUNT(DISTINCT person) FROM social.users";
    engine.query(q, "brand").await.unwrap();
    assert!(engine.query(q, "brand").await.unwrap().cached);
    drop(engine);
    let collab = w.collab();
    let mut cat = Catalog::open(&w.state.join("catalog.sqlite")).unwrap();
    let r = forget(
        &mut cat,
        &collab,
        "social",
        &opted,
        ForgetKind::OptOut,
        "ops",
    )
    .unwrap();
    assert!(r.new && r.cache_cleared >= 1);
    forget(
        &mut cat,
        &collab,
        "retail",
        &member,
        ForgetKind::Delete,
        "ops",
    )
    .unwrap();
    assert!(
        !forget(
            &mut cat,
            &collab,
            "retail",
            &member,
            ForgetKind::Delete,
            "ops"
        )
        .unwrap()
        .new
    );
    assert!(forget(&mut cat, &collab, "tv", "x", ForgetKind::Delete, "ops").is_err());
    // The audit entry does not carry the id.
    let audit = cat.audit_entries().unwrap();
    assert!(
        audit
            .iter()
            .all(|e| !e.details.contains(&opted) && !e.details.contains(&member))
    );
    drop(cat);

    let (mut engine, after) = w.engine().await;
    assert_ne!(before.fingerprint, after.fingerprint);
    assert_eq!(after.excluded_people, 2);
    // Rebuilt view: the answer is not served from the old cache.
    assert!(!engine.query(q, "brand").await.unwrap().cached);
    let v2 = deliver(
        &mut engine,
        &w.collab(),
        &w.state,
        &store,
        &d,
        "brand",
        NOW,
        None,
    )
    .await
    .unwrap();
    let ids2: BTreeSet<String> = store
        .delivered_ids(&v2.record)
        .unwrap()
        .into_iter()
        .collect();
    let mut want: BTreeSet<String> = ids1.iter().cloned().collect();
    want.remove(&opted);
    want.remove(&deleted);
    assert_eq!(ids2, want);
    // RTA: the index of delivered audiences says no to both, yes to the others.
    let (index, build) = rta_index(
        &store,
        &collab,
        w.spec.parent().unwrap(),
        &w.state,
        "social",
    )
    .unwrap();
    assert_eq!(build.campaigns, vec!["hair-care-young".to_string()]);
    assert!(build.suppressed >= 2);
    for gone in [&opted, &deleted] {
        let md5 = device_md5(&w, gone).unwrap();
        assert!(!index.contains(md5));
        assert!(!index.decide("hair-care-young", md5).unwrap().bid());
    }
    let md5 = device_md5(&w, &kept).unwrap();
    assert!(index.decide("hair-care-young", md5).unwrap().bid());
    // A deletion also leaves the versions already delivered; an opt-out keeps history.
    let removed = purge_delivered(&store, &collab, &w.state).unwrap();
    assert!(removed >= 2, "{removed}");
    let old: Vec<String> = store.delivered_ids(&v1.record).unwrap();
    assert!(!old.contains(&deleted) && !old.contains(&opted));
}

#[tokio::test]
async fn consent_scope_and_opt_out_columns_are_honoured() {
    let w = world(15, 3_000);
    let text = std::fs::read_to_string(&w.spec).unwrap();
    let crm = "dimensions = [\"tier\", \"opted_out\", \"consent\"]";
    assert!(text.contains(crm));
    std::fs::write(
        &w.spec,
        text.replace(
            crm,
            &format!("{crm}\nconsent = [\"analytics\"]\nopt_out_column = \"opted_out\""),
        ),
    )
    .unwrap();
    let (mut engine, info) = w.engine().await;
    // The brand's opted-out customers are not in the view.
    let flagged = w
        .csv("brand/crm.csv")
        .iter()
        .filter(|c| c["opted_out"] == "true")
        .count();
    assert!(flagged > 0);
    assert!(info.excluded_people > 0);
    let rows = info.tables.iter().find(|t| t.name == "brand.crm").unwrap();
    assert_eq!(rows.excluded_rows as usize, flagged);
    let store = Store::new(&w.state);
    let d = def(RULES);
    let e = deliver(
        &mut engine,
        &w.collab(),
        &w.state,
        &store,
        &d,
        "brand",
        NOW,
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, Error::Consent { ref table, .. } if table == "brand.crm"),
        "{e}"
    );
    assert!(store.versions("hair-care-young").unwrap().is_empty());
    // Without the brand's table the audience may be delivered.
    let d = def(&RULES.replace("exclude = [\"brand.crm\"]", ""));
    deliver(
        &mut engine,
        &w.collab(),
        &w.state,
        &store,
        &d,
        "brand",
        NOW,
        None,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn retention_drops_old_rows_from_the_view() {
    let w = world(16, 1_500);
    let text = std::fs::read_to_string(&w.spec).unwrap();
    let orders = "timestamps = [\"ts\"]\n\n[[party]]\nname = \"brand\"";
    assert!(text.contains(orders));
    std::fs::write(
        &w.spec,
        text.replace(
            orders,
            &orders.replacen(
                "timestamps = [\"ts\"]",
                "timestamps = [\"ts\"]\nretention_days = 30",
                1,
            ),
        ),
    )
    .unwrap();
    let exclusions = view::Exclusions {
        forgotten: Default::default(),
        now: AS_OF,
    };
    let info = view::build_local_with(
        &w.spec,
        &w.state,
        Arc::new(|_: &str, _: u64| {}),
        &exclusions,
    )
    .await
    .unwrap();
    let t = info
        .tables
        .iter()
        .find(|t| t.name == "retail.orders")
        .unwrap();
    let from = AS_OF - 30 * 86_400;
    let orders = w.csv("retail/orders.csv");
    let linked = w.linkage("retail");
    let recent = orders
        .iter()
        .filter(|o| linked.contains_key(&o["member_id"]) && epoch(&o["ts"]) >= from)
        .count();
    assert_eq!(t.rows as usize, recent);
    assert_eq!(
        (t.rows + t.expired_rows + t.orphan_rows) as usize,
        orders.len()
    );
    assert!(t.expired_rows > 0);
}

#[tokio::test]
async fn lookalike_finds_people_truly_interested_in_the_seed_category() {
    let w = world(21, 30_000);
    let (engine, _) = w.engine().await;
    let seed_rules = r#"
name = "beauty-buyers"
activate = "social"
include = ["retail.orders.category = 'beauty'"]
"#;
    let seed = evaluate(&engine, &def(seed_rules), NOW, None)
        .await
        .unwrap();
    let n = 3_000u64;
    let la = evaluate(
        &engine,
        &def(&format!("{seed_rules}[lookalike]\nsize = {n}\n")),
        NOW,
        None,
    )
    .await
    .unwrap();
    let report = la.lookalike().unwrap().clone();
    let seed_set: HashSet<u64> = seed.members().iter().copied().collect();
    let added: Vec<u64> = la
        .members()
        .iter()
        .copied()
        .filter(|p| !seed_set.contains(p))
        .collect();
    assert_eq!(added.len() as u64, n);
    assert_eq!(report.added, n);
    // Truth: the latent interests of each media user.
    let social = w.linkage("social");
    let person_user: HashMap<u64, &String> = social.iter().map(|(u, p)| (*p, u)).collect();
    let people = w.csv("truth/people.csv");
    let interested: HashSet<&str> = people
        .iter()
        .filter(|p| p["interests"].split(';').any(|i| i == "beauty"))
        .map(|p| p["social_user_id"].as_str())
        .collect();
    let is_interested = |p: &u64| interested.contains(person_user[p].as_str());
    let hits = added.iter().filter(|p| is_interested(p)).count();
    let precision = hits as f64 / added.len() as f64;
    let others: Vec<u64> = social
        .values()
        .copied()
        .filter(|p| !seed_set.contains(p))
        .collect();
    let base = others.iter().filter(|p| is_interested(p)).count() as f64 / others.len() as f64;
    println!(
        "look-alike (30,000 people, seed {}): top {n} precision {precision:.3} vs base rate {base:.3} ({:.2}x); held-out: precision {:.3}, base {:.3}, lift {:.2}, recall {:.3}",
        seed.size_class(),
        precision / base,
        report.precision,
        report.base_rate,
        report.lift,
        report.recall
    );
    assert!(precision >= 2.0 * base, "{precision} vs {base}");
    assert!(report.lift > 1.0, "{report:?}");
    // Seed bounds.
    let small = def(
        "name = \"s\"\nactivate = \"social\"\ninclude = [\"retail.orders.category = 'beauty' AND ts within 5 days\"]\nas_of = \"2026-06-30\"\nmin_size = 1\n[lookalike]\nsize = 100\n",
    );
    let e = evaluate(&engine, &small, NOW, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("fewer than 2,000") && e.contains("at least 2,000"),
        "{e}"
    );
}
