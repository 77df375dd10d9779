//! Recomputes every figure of `truth.json` from the written CSV files alone — with its
//! own identifier canonicalisation, linking, attribution and calendar code, none of the
//! generator's — and checks that both agree.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use md5::Md5;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// One CSV table, every cell as text.
struct Csv {
    columns: HashMap<String, usize>,
    rows: Vec<csv::StringRecord>,
}

impl Csv {
    fn read(dir: &Path, name: &str) -> Csv {
        let path = dir.join(format!("{name}.csv"));
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::None)
            .from_path(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let columns = reader
            .headers()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, h)| (h.to_string(), i))
            .collect();
        let rows = reader.records().map(|r| r.unwrap()).collect();
        Csv { columns, rows }
    }

    fn col(&self, name: &str) -> usize {
        *self
            .columns
            .get(name)
            .unwrap_or_else(|| panic!("no column {name}"))
    }

    /// Every row's value of `column`.
    fn values<'a>(&'a self, column: &str) -> impl Iterator<Item = &'a str> + 'a {
        let c = self.col(column);
        self.rows.iter().map(move |r| &r[c])
    }
}

// ---- identifier canonicalisation, written from the documented rules ----

#[derive(Debug, Clone, PartialEq, Eq)]
enum Id {
    Missing,
    Invalid,
    /// Canonical value (for hashes: lower-case hex; for devices: type + value).
    Valid(String),
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn raw_phone(s: &str) -> Id {
    if s.is_empty() {
        return Id::Missing;
    }
    let mut digits: String = s.chars().filter(char::is_ascii_digit).collect();
    if digits.len() == 13 && digits.starts_with("86") {
        digits = digits[2..].to_string();
    }
    let ok = digits.len() == 11
        && digits.starts_with('1')
        && matches!(digits.as_bytes()[1], b'3'..=b'9');
    if ok { Id::Valid(digits) } else { Id::Invalid }
}

fn hashed(s: &str, hex_len: usize) -> Id {
    let t = s.trim().to_ascii_lowercase();
    if t.is_empty() {
        Id::Missing
    } else if t.len() == hex_len && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Id::Valid(t)
    } else {
        Id::Invalid
    }
}

fn email(s: &str) -> Id {
    let t = s.trim().to_lowercase();
    if t.is_empty() {
        return Id::Missing;
    }
    let mut parts = t.split('@');
    let (local, domain) = (parts.next().unwrap_or(""), parts.next());
    match domain {
        Some(d)
            if parts.next().is_none()
                && !local.is_empty()
                && d.contains('.')
                && !t.contains(' ') =>
        {
            Id::Valid(t)
        }
        _ => Id::Invalid,
    }
}

fn device(value: &str, kind: &str) -> Id {
    let v = value.trim();
    if v.is_empty() {
        return Id::Missing;
    }
    if v.chars().all(|c| c == '0' || c == '-') {
        return Id::Invalid;
    }
    let uuid = |u: &str| {
        let groups: Vec<&str> = u.split('-').collect();
        groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
            && groups
                .iter()
                .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let canonical = match kind {
        "imei" if (14..=15).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            v.to_ascii_lowercase()
        }
        "idfa" if uuid(v) => v.to_ascii_uppercase(),
        "oaid" if !v.is_empty() => v.to_string(),
        _ => return Id::Invalid,
    };
    Id::Valid(format!("{kind}:{canonical}"))
}

/// The keys a phone cell can be matched on: (form, value).
fn phone_keys(id: &Id, form: &str) -> Vec<(String, String)> {
    match (id, form) {
        (Id::Valid(v), "raw") => vec![
            ("md5".into(), hex_of(&Md5::digest(v.as_bytes()))),
            ("sha256".into(), hex_of(&Sha256::digest(v.as_bytes()))),
        ],
        (Id::Valid(v), f) => vec![(f.to_string(), v.clone())],
        _ => vec![],
    }
}

/// One party's identifier column: every record's cell, and which values are ambiguous.
struct IdColumn {
    cells: HashMap<String, Id>,
    duplicated: HashSet<String>,
}

impl IdColumn {
    fn new(record_ids: Vec<String>, cells: Vec<Id>) -> Self {
        let mut count: HashMap<String, u32> = HashMap::new();
        for c in &cells {
            if let Id::Valid(v) = c {
                *count.entry(v.clone()).or_default() += 1;
            }
        }
        let duplicated = count
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(v, _)| v)
            .collect();
        IdColumn {
            cells: record_ids.into_iter().zip(cells).collect(),
            duplicated,
        }
    }

    /// The record's value if it is valid and held by no other record.
    fn usable(&self, record: &str) -> Option<&Id> {
        match self.cells.get(record) {
            Some(id @ Id::Valid(v)) if !self.duplicated.contains(v) => Some(id),
            _ => None,
        }
    }

    fn tally(&self) -> Value {
        let (mut missing, mut valid, mut invalid, mut ambiguous) = (0u64, 0u64, 0u64, 0u64);
        for c in self.cells.values() {
            match c {
                Id::Missing => missing += 1,
                Id::Invalid => invalid += 1,
                Id::Valid(v) if self.duplicated.contains(v) => ambiguous += 1,
                Id::Valid(_) => valid += 1,
            }
        }
        serde_json::json!({
            "rows": self.cells.len(), "missing": missing, "valid": valid,
            "invalid": invalid, "ambiguous": ambiguous,
        })
    }
}

// ---- calendar (+08:00) ----

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD` to days since 1970-01-01.
fn date_days(s: &str) -> i64 {
    days_from_civil(
        s[0..4].parse().unwrap(),
        s[5..7].parse().unwrap(),
        s[8..10].parse().unwrap(),
    )
}

/// `YYYY-MM-DDTHH:MM:SS+08:00` to Unix seconds.
fn ts(s: &str) -> i64 {
    assert!(s.ends_with("+08:00"), "timestamp {s} is not in +08:00");
    let secs = |a: usize| -> i64 { s[a..a + 2].parse().unwrap() };
    date_days(s) * 86_400 + secs(11) * 3_600 + secs(14) * 60 + secs(17) - 8 * 3_600
}

/// Local (+08:00) `YYYY-MM` of a Unix time.
fn month_of(t: i64) -> String {
    let local_days = (t + 8 * 3_600).div_euclid(86_400);
    let month = (1..=12)
        .rev()
        .find(|m| date_days(&format!("2026-{m:02}-01")) <= local_days)
        .unwrap();
    format!("2026-{month:02}")
}

// ---- the check ----

struct Order {
    id: i64,
    ts: i64,
    brand: String,
    amount: i64,
}

struct Exposure {
    campaign: String,
    ts: i64,
    click: bool,
}

fn check_world(dir: &Path) {
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("truth.json")).unwrap()).unwrap();
    let people = Csv::read(dir, "truth/people");
    let social = Csv::read(dir, "social/users");
    let retail = Csv::read(dir, "retail/users");
    let crm = Csv::read(dir, "brand/crm");
    let campaigns = Csv::read(dir, "social/campaigns");
    let exposures = Csv::read(dir, "social/exposures");
    let holdout = Csv::read(dir, "social/holdout");
    let orders = Csv::read(dir, "retail/orders");
    let caused = Csv::read(dir, "truth/caused_orders");

    // People per party.
    assert_eq!(truth["people"]["world"], people.rows.len());
    assert_eq!(truth["people"]["social"], social.rows.len());
    assert_eq!(truth["people"]["retail"], retail.rows.len());
    assert_eq!(truth["people"]["brand"], crm.rows.len());
    assert_eq!(truth["world"]["caused_orders"], caused.rows.len());

    // Identifier columns.
    let column = |t: &Csv, id_col: &str, f: &dyn Fn(&csv::StringRecord) -> Id| {
        let ids = t.values(id_col).map(str::to_string).collect();
        IdColumn::new(ids, t.rows.iter().map(f).collect())
    };
    let (c_md5, c_sdev) = (
        social.col("phone_md5"),
        (social.col("device_id"), social.col("device_type")),
    );
    let s_phone = column(&social, "user_id", &|r| hashed(&r[c_md5], 32));
    let s_device = column(&social, "user_id", &|r| device(&r[c_sdev.0], &r[c_sdev.1]));
    let (c_rp, c_re, c_rdev) = (
        retail.col("phone"),
        retail.col("email"),
        (retail.col("device_id"), retail.col("device_type")),
    );
    let r_phone = column(&retail, "member_id", &|r| raw_phone(&r[c_rp]));
    let r_email = column(&retail, "member_id", &|r| email(&r[c_re]));
    let r_device = column(&retail, "member_id", &|r| {
        device(&r[c_rdev.0], &r[c_rdev.1])
    });
    let (c_bp, c_be) = (crm.col("phone_sha256"), crm.col("email"));
    let b_phone = column(&crm, "customer_id", &|r| hashed(&r[c_bp], 64));
    let b_email = column(&crm, "customer_id", &|r| email(&r[c_be]));
    for (party, name, col) in [
        ("social", "phone_md5", &s_phone),
        ("social", "device_id", &s_device),
        ("retail", "phone", &r_phone),
        ("retail", "email", &r_email),
        ("retail", "device_id", &r_device),
        ("brand", "phone_sha256", &b_phone),
        ("brand", "email", &b_email),
    ] {
        assert_eq!(
            truth["identifiers"][party][name],
            col.tally(),
            "identifiers.{party}.{name}"
        );
    }

    // Linking: each person's records, joined where a usable identifier matches in a
    // common form; linkable for a set of parties when their records are connected.
    let (pc_s, pc_r, pc_b) = (
        people.col("social_user_id"),
        people.col("retail_member_id"),
        people.col("brand_customer_id"),
    );
    let phone_of = |party: usize, rec: &str| -> Vec<(String, String)> {
        match party {
            0 => s_phone.usable(rec).map(|id| phone_keys(id, "md5")),
            1 => r_phone.usable(rec).map(|id| phone_keys(id, "raw")),
            _ => b_phone.usable(rec).map(|id| phone_keys(id, "sha256")),
        }
        .unwrap_or_default()
    };
    let email_of = |party: usize, rec: &str| -> Option<Id> {
        match party {
            1 => r_email.usable(rec).cloned(),
            2 => b_email.usable(rec).cloned(),
            _ => None,
        }
    };
    let device_of = |party: usize, rec: &str| -> Option<Id> {
        match party {
            0 => s_device.usable(rec).cloned(),
            1 => r_device.usable(rec).cloned(),
            _ => None,
        }
    };
    let sets: [(&str, Vec<usize>); 4] = [
        ("social+retail", vec![0, 1]),
        ("social+brand", vec![0, 2]),
        ("retail+brand", vec![1, 2]),
        ("social+retail+brand", vec![0, 1, 2]),
    ];
    let mut overlap: BTreeMap<&str, [u64; 5]> = BTreeMap::new();
    // Person ids whose social and retail records link (the clean room's population).
    let mut linked_sr: HashSet<String> = HashSet::new();
    let mut person_of_user: HashMap<String, String> = HashMap::new();
    let mut person_of_member: HashMap<String, String> = HashMap::new();
    for row in &people.rows {
        let pid = row[0].to_string();
        let recs: Vec<Option<&str>> = [pc_s, pc_r, pc_b]
            .iter()
            .map(|&c| Some(&row[c]).filter(|s| !s.is_empty()))
            .collect();
        if let Some(u) = recs[0] {
            person_of_user.insert(u.to_string(), pid.clone());
        }
        if let Some(m) = recs[1] {
            person_of_member.insert(m.to_string(), pid.clone());
        }
        // Pairwise joins by type [phone, email, device].
        let mut joins: Vec<(usize, usize, [bool; 3])> = Vec::new();
        for a in 0..3 {
            for b in a + 1..3 {
                let (Some(ra), Some(rb)) = (recs[a], recs[b]) else {
                    continue;
                };
                let pa: HashSet<_> = phone_of(a, ra).into_iter().collect();
                let phone = phone_of(b, rb).iter().any(|k| pa.contains(k));
                let mail =
                    matches!((email_of(a, ra), email_of(b, rb)), (Some(x), Some(y)) if x == y);
                let dev =
                    matches!((device_of(a, ra), device_of(b, rb)), (Some(x), Some(y)) if x == y);
                joins.push((a, b, [phone, mail, dev]));
            }
        }
        let reach = |members: &[usize], types: [bool; 3]| -> bool {
            // Breadth-first search from the first member over allowed joins.
            let mut seen = vec![members[0]];
            let mut frontier = vec![members[0]];
            while let Some(n) = frontier.pop() {
                for &(a, b, t) in &joins {
                    if (0..3).any(|i| t[i] && types[i]) {
                        for (x, y) in [(a, b), (b, a)] {
                            if x == n && !seen.contains(&y) {
                                seen.push(y);
                                frontier.push(y);
                            }
                        }
                    }
                }
            }
            members.iter().all(|m| seen.contains(m))
        };
        for (key, members) in &sets {
            if members.iter().any(|&p| recs[p].is_none()) {
                continue;
            }
            let o = overlap.entry(key).or_default();
            o[0] += 1;
            if reach(members, [true; 3]) {
                o[1] += 1;
                if *key == "social+retail" {
                    linked_sr.insert(pid.clone());
                }
            }
            for t in 0..3 {
                if reach(members, std::array::from_fn(|i| i == t)) {
                    o[2 + t] += 1;
                }
            }
        }
    }
    for (key, _) in &sets {
        let o = overlap.get(key).copied().unwrap_or_default();
        let expected = serde_json::json!({
            "people": o[0], "linkable": o[1],
            "by_id_type": {"phone": o[2], "email": o[3], "device": o[4]},
        });
        assert_eq!(truth["overlap"][key], expected, "overlap.{key}");
    }

    // Campaigns.
    struct Camp {
        id: String,
        brand: String,
        start: i64,
        end: i64,
        spend: i64,
        start_day: i64,
        end_day: i64,
    }
    let camps: Vec<Camp> = campaigns
        .rows
        .iter()
        .map(|r| {
            let (s, e) = (
                date_days(&r[campaigns.col("start_date")]),
                date_days(&r[campaigns.col("end_date")]),
            );
            Camp {
                id: r[campaigns.col("campaign_id")].to_string(),
                brand: r[campaigns.col("brand")].to_string(),
                start: s * 86_400 - 8 * 3_600,
                end: (e + 1) * 86_400 - 8 * 3_600,
                spend: r[campaigns.col("spend_fen")].parse().unwrap(),
                start_day: s,
                end_day: e,
            }
        })
        .collect();
    let camp_brand: HashMap<&str, &str> = camps
        .iter()
        .map(|c| (c.id.as_str(), c.brand.as_str()))
        .collect();
    let caused_by: HashMap<i64, String> = caused
        .rows
        .iter()
        .map(|r| (r[0].parse().unwrap(), r[1].to_string()))
        .collect();
    let mut orders_of: HashMap<&str, Vec<Order>> = HashMap::new();
    let (oc_id, oc_m, oc_ts, oc_b, oc_a) = (
        orders.col("order_id"),
        orders.col("member_id"),
        orders.col("ts"),
        orders.col("brand"),
        orders.col("amount_fen"),
    );
    for r in &orders.rows {
        let pid = person_of_member[&r[oc_m]].as_str();
        orders_of.entry(pid).or_default().push(Order {
            id: r[oc_id].parse().unwrap(),
            ts: ts(&r[oc_ts]),
            brand: r[oc_b].to_string(),
            amount: r[oc_a].parse().unwrap(),
        });
    }
    for v in orders_of.values_mut() {
        v.sort_by_key(|o| (o.ts, o.id));
    }
    let mut exposures_of: HashMap<&str, Vec<Exposure>> = HashMap::new();
    let (ec_u, ec_c, ec_ts, ec_k) = (
        exposures.col("user_id"),
        exposures.col("campaign_id"),
        exposures.col("ts"),
        exposures.col("kind"),
    );
    for r in &exposures.rows {
        exposures_of
            .entry(person_of_user[&r[ec_u]].as_str())
            .or_default()
            .push(Exposure {
                campaign: r[ec_c].to_string(),
                ts: ts(&r[ec_ts]),
                click: &r[ec_k] == "click",
            });
    }

    // Per campaign and population (0 = all, 1 = linked): counters keyed by name.
    let mut figures: HashMap<(String, usize), BTreeMap<&str, i64>> = HashMap::new();
    let mut freq: HashMap<(String, usize), [u64; 10]> = HashMap::new();
    let pops = |pid: &str| {
        if linked_sr.contains(pid) {
            vec![0, 1]
        } else {
            vec![0]
        }
    };
    let (hc_u, hc_c, hc_g) = (
        holdout.col("user_id"),
        holdout.col("campaign_id"),
        holdout.col("grp"),
    );
    for r in &holdout.rows {
        let pid = person_of_user[&r[hc_u]].as_str();
        let camp = camps.iter().find(|c| c.id == r[hc_c]).unwrap();
        let window: Vec<&Order> = orders_of
            .get(pid)
            .map(|os| {
                os.iter()
                    .filter(|o| {
                        o.brand == camp.brand && o.ts >= camp.start && o.ts < camp.end + 7 * 86_400
                    })
                    .collect()
            })
            .unwrap_or_default();
        let converted = !window.is_empty();
        let anyway = window
            .iter()
            .any(|o| caused_by.get(&o.id) != Some(&camp.id));
        let test = &r[hc_g] == "test";
        for p in pops(pid) {
            let f = figures.entry((camp.id.clone(), p)).or_default();
            let g = if test { "test" } else { "control" };
            *f.entry(g).or_default() += 1;
            if converted {
                *f.entry(if test {
                    "test_conversions"
                } else {
                    "control_conversions"
                })
                .or_default() += 1;
                if test && !anyway {
                    *f.entry("incremental_conversions").or_default() += 1;
                }
            }
        }
    }
    let mut months: BTreeMap<String, BTreeMap<&str, i64>> = BTreeMap::new();
    for (pid, exps) in &exposures_of {
        let mut per_campaign: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for e in exps {
            let c = per_campaign.entry(e.campaign.as_str()).or_default();
            if e.click {
                c.1 += 1
            } else {
                c.0 += 1
            }
            *months
                .entry(month_of(e.ts))
                .or_default()
                .entry(if e.click { "clicks" } else { "impressions" })
                .or_default() += 1;
        }
        for (cid, (imps, clicks)) in per_campaign {
            for p in pops(pid) {
                let f = figures.entry((cid.to_string(), p)).or_default();
                *f.entry("impressions").or_default() += imps as i64;
                *f.entry("clicks").or_default() += clicks as i64;
                if imps > 0 {
                    *f.entry("reach").or_default() += 1;
                    freq.entry((cid.to_string(), p)).or_default()[(imps.min(10) - 1) as usize] += 1;
                }
            }
        }
    }
    // Last touch: 7-day click, else 1-day view, click preferred; cap 8 per person.
    for (pid, os) in &orders_of {
        let exps = exposures_of.get(pid).map(Vec::as_slice).unwrap_or_default();
        let mut credited = 0;
        for o in os {
            if credited == 8 {
                break;
            }
            let pick = |click: bool, window: i64| {
                exps.iter()
                    .filter(|e| {
                        e.click == click
                            && camp_brand[e.campaign.as_str()] == o.brand
                            && e.ts < o.ts
                            && o.ts - e.ts <= window
                    })
                    .max_by(|a, b| a.ts.cmp(&b.ts).then(b.campaign.cmp(&a.campaign)))
            };
            let Some(touch) = pick(true, 7 * 86_400).or_else(|| pick(false, 86_400)) else {
                continue;
            };
            credited += 1;
            for p in pops(pid) {
                let f = figures.entry((touch.campaign.clone(), p)).or_default();
                *f.entry("attributed_conversions").or_default() += 1;
                *f.entry("attributed_gmv_fen").or_default() += o.amount;
            }
            let m = months.entry(month_of(o.ts)).or_default();
            *m.entry("conversions").or_default() += 1;
            *m.entry("gmv_fen").or_default() += o.amount;
        }
    }
    let names = [
        "test",
        "control",
        "test_conversions",
        "control_conversions",
        "incremental_conversions",
        "attributed_conversions",
        "attributed_gmv_fen",
        "reach",
        "impressions",
        "clicks",
    ];
    let ratio = |a: i64, b: i64| {
        if b > 0 {
            Some(a as f64 / b as f64)
        } else {
            None
        }
    };
    for c in &camps {
        let t = &truth["campaigns"][&c.id];
        assert_eq!(t["brand"], c.brand.as_str());
        assert_eq!(t["spend_fen"], c.spend);
        for (p, pop) in ["all", "linked"].iter().enumerate() {
            let key = (c.id.clone(), p);
            let f = figures.get(&key).cloned().unwrap_or_default();
            let get = |n: &str| f.get(n).copied().unwrap_or(0);
            for n in names {
                assert_eq!(t[pop][n], get(n), "campaigns.{}.{pop}.{n}", c.id);
            }
            assert_eq!(
                t[pop]["frequency"],
                serde_json::json!(freq.get(&key).copied().unwrap_or_default()),
                "campaigns.{}.{pop}.frequency",
                c.id
            );
            let close = |v: &Value, e: Option<f64>| match (v.as_f64(), e) {
                (Some(a), Some(b)) => (a - b).abs() < 1e-12,
                (None, None) => v.is_null(),
                _ => false,
            };
            assert!(close(
                &t[pop]["test_rate"],
                ratio(get("test_conversions"), get("test"))
            ));
            assert!(close(
                &t[pop]["control_rate"],
                ratio(get("control_conversions"), get("control"))
            ));
            assert!(close(
                &t[pop]["true_relative_lift"],
                ratio(
                    get("incremental_conversions"),
                    get("test_conversions") - get("incremental_conversions")
                )
            ));
        }
    }

    // Program: spend split evenly over a campaign's days, remainder on its first day.
    for (month, t) in truth["program"].as_object().unwrap() {
        let first = date_days(&format!("{month}-01"));
        let next = if month == "2026-12" {
            date_days("2027-01-01")
        } else {
            let m: i64 = month[5..7].parse().unwrap();
            date_days(&format!("2026-{:02}-01", m + 1))
        };
        let active: Vec<&Camp> = camps
            .iter()
            .filter(|c| c.start_day < next && c.end_day >= first)
            .collect();
        let spend: i64 = camps
            .iter()
            .map(|c| {
                let days = c.end_day - c.start_day + 1;
                (first.max(c.start_day)..next.min(c.end_day + 1))
                    .map(|d| c.spend / days + if d == c.start_day { c.spend % days } else { 0 })
                    .sum::<i64>()
            })
            .sum();
        let mut brands: Vec<&str> = active.iter().map(|c| c.brand.as_str()).collect();
        brands.sort_unstable();
        brands.dedup();
        let m = months.get(month).cloned().unwrap_or_default();
        let get = |n: &str| m.get(n).copied().unwrap_or(0);
        let expected = serde_json::json!({
            "spend_fen": spend, "impressions": get("impressions"), "clicks": get("clicks"),
            "conversions": get("conversions"), "gmv_fen": get("gmv_fen"),
            "campaigns_active": active.len(), "brands_active": brands.len(), "brands": brands,
        });
        assert_eq!(*t, expected, "program.{month}");
    }
}

fn generate(seed: u64, dir: &Path) {
    let config = jingteng_synth::Config {
        seed,
        scale: "tiny".parse().unwrap(),
        force: false,
        media: 1,
    };
    jingteng_synth::generate(&config, dir, &|_, _| {}).unwrap();
}

#[test]
fn truth_json_equals_a_recomputation_from_the_files() {
    for seed in [11, 12] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("world");
        generate(seed, &dir);
        check_world(&dir);
    }
}

#[test]
fn the_world_has_what_later_work_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("world");
    generate(3, &dir);
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("truth.json")).unwrap()).unwrap();
    // Every kind of identifier trouble occurs, so matching has something to reject.
    for (party, col) in [
        ("social", "phone_md5"),
        ("retail", "phone"),
        ("retail", "email"),
        ("brand", "phone_sha256"),
    ] {
        assert!(
            truth["identifiers"][party][col]["invalid"]
                .as_u64()
                .unwrap()
                > 0,
            "{party}.{col}"
        );
    }
    assert!(
        truth["identifiers"]["social"]["device_id"]["ambiguous"]
            .as_u64()
            .unwrap()
            > 0
    );
    // Phones come in several raw forms.
    let retail = Csv::read(&dir, "retail/users");
    let phones: Vec<&str> = retail.values("phone").collect();
    assert!(phones.iter().any(|p| p.starts_with("+86 ")));
    assert!(phones.iter().any(|p| p.len() == 13 && p.starts_with("86")));
    assert!(phones.iter().any(|p| p.len() == 11));
    // Campaigns work: on the linked population, the test group converts more than control
    // summed over campaigns, and incremental conversions are a real share of it.
    let (mut tc, mut t, mut cc, mut c, mut inc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for camp in truth["campaigns"].as_object().unwrap().values() {
        let l = &camp["linked"];
        tc += l["test_conversions"].as_f64().unwrap();
        t += l["test"].as_f64().unwrap();
        cc += l["control_conversions"].as_f64().unwrap();
        c += l["control"].as_f64().unwrap();
        inc += l["incremental_conversions"].as_f64().unwrap();
    }
    assert!(
        tc / t > cc / c,
        "test rate {} vs control rate {}",
        tc / t,
        cc / c
    );
    assert!(inc > 0.05 * tc);
}
