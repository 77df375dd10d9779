//! The collaboration spec: a TOML file, written for people, that says which parties take
//! part, which of their tables hold identifiers (and in what form), and what role every
//! other column plays. `docs/collaboration-spec.md` documents it with an example.
//!
//! Text is parsed into [`SpecFile`] (the file as written, unknown keys refused), then
//! checked into a [`Collaboration`], which can no longer be inconsistent.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::normalize::{DeviceType, DigestKind, Form, IdType};
use crate::{Error, Result};

/// The spec file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    /// The collaboration itself.
    pub collaboration: CollaborationSection,
    /// The parties, in the order reports list them.
    #[serde(rename = "party")]
    pub parties: Vec<PartySection>,
}

/// `[collaboration]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollaborationSection {
    /// Identifier of the collaboration; it separates the hash domain, so the same
    /// identifiers in two collaborations never produce the same points.
    pub id: String,
    /// What it is for, for people.
    #[serde(default)]
    pub description: String,
    /// The party whose node joins and computes (DESIGN §2); required for the networked
    /// match, which no other member may start or receive join keys for.
    #[serde(default)]
    pub host: Option<String>,
}

/// `[[party]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartySection {
    /// Short name (`social`, `retail`, …): lower-case letters, digits and `_`.
    pub name: String,
    /// Who this party is, for people.
    #[serde(default)]
    pub description: String,
    /// The party's tables.
    #[serde(rename = "table")]
    pub tables: Vec<TableSection>,
    /// How the party's data may be released; defaults apply when absent.
    #[serde(default)]
    pub privacy: Option<PrivacySection>,
}

/// `[party.privacy]`: how a party's data may be released (docs/privacy.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacySection {
    /// `dp` (the default) or `threshold`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Threshold mode: distinct people every output row must cover (default 50).
    #[serde(default)]
    pub min_people: Option<u64>,
    /// DP mode: ε charged per query (default 0.5).
    #[serde(default)]
    pub epsilon: Option<f64>,
    /// DP mode: total ε per analyst in this collaboration (default 10).
    #[serde(default)]
    pub budget: Option<f64>,
    /// DP mode: output groups one person may count in (default 1).
    #[serde(default)]
    pub max_groups_per_person: Option<u32>,
    /// DP mode: rows one person may contribute to one group (default 10).
    #[serde(default)]
    pub max_rows_per_person: Option<u32>,
}

/// `[[party.table]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSection {
    /// Table name, unique within the party (`users`, `orders`).
    pub name: String,
    /// CSV or Parquet file, relative to the spec file.
    pub path: String,
    /// In the table with identifiers: the column that identifies the party's record of
    /// a person (required). In other tables: the column that refers to that record (the
    /// person a row is about); absent for tables not about people (a campaign list).
    /// Record ids never leave the party.
    #[serde(default)]
    pub record_id: Option<String>,
    /// Identifier columns; exactly one table per party has them.
    #[serde(default, rename = "identifier")]
    pub identifiers: Vec<IdentifierSection>,
    /// Columns that may be grouped and filtered on.
    #[serde(default)]
    pub dimensions: Vec<String>,
    /// Numeric columns that may be aggregated.
    #[serde(default)]
    pub measures: Vec<String>,
    /// Event-time columns.
    #[serde(default)]
    pub timestamps: Vec<String>,
    /// Value bounds of measures, `column = [low, high]` (integers); DP release clamps
    /// to them and refuses a measure without bounds.
    #[serde(default)]
    pub bounds: BTreeMap<String, [i64; 2]>,
    /// Aggregates allowed per measure (`count`, `sum`, `avg`, `min`, `max`); a measure
    /// not listed allows `count`, `sum` and `avg`.
    #[serde(default)]
    pub aggregates: BTreeMap<String, Vec<String>>,
    /// Retention: rows whose first timestamp is older than this many days are left out
    /// of the joined view (the table needs a timestamp column).
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// What the people in this dataset consented to: `analytics` (aggregate queries)
    /// and/or `activation` (audiences delivered to a media party, RTA). Absent: the
    /// owner declared no restriction beyond the column roles.
    #[serde(default)]
    pub consent: Option<Vec<String>>,
    /// Identity table only: a column whose true values (`true`, `1`, `yes`, `y`, any
    /// case) mark records that opted out; their people are left out of the view, of
    /// every audience and of RTA, like `jingteng forget --opt-out`.
    #[serde(default)]
    pub opt_out_column: Option<String>,
}

/// The consent scopes a dataset may declare.
pub const CONSENT_SCOPES: [&str; 2] = ["analytics", "activation"];

/// `[[party.table.identifier]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifierSection {
    /// The column.
    pub column: String,
    /// `phone`, `email`, `device`, `device:imei` (oaid, idfa, caid, mac) or `opaque`.
    #[serde(rename = "type")]
    pub id_type: String,
    /// `raw` (default), `md5` or `sha256` (hex of the canonical form).
    #[serde(default = "raw")]
    pub form: String,
    /// For `type = "device"`: the column that names each row's device type.
    #[serde(default)]
    pub device_type_column: Option<String>,
}

fn raw() -> String {
    "raw".into()
}

/// A checked collaboration.
#[derive(Debug, Clone)]
pub struct Collaboration {
    id: String,
    description: String,
    host: Option<String>,
    parties: Vec<Party>,
}

/// A checked party.
#[derive(Debug, Clone)]
pub struct Party {
    /// Its name.
    pub name: String,
    /// Its table with identifiers.
    pub identity: Table,
    /// Its other tables.
    pub tables: Vec<Table>,
    /// How its data may be released.
    pub privacy: Privacy,
}

impl Party {
    /// Its tables: the identity table first, then the others in spec order.
    pub fn all_tables(&self) -> impl Iterator<Item = &Table> {
        std::iter::once(&self.identity).chain(&self.tables)
    }
}

/// How data may leave the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseMode {
    /// Differential privacy: bounded contributions, noise, DP selection of groups.
    Dp,
    /// Exact aggregates; rows covering fewer than `min_people` people are suppressed.
    Threshold,
}

/// A party's checked privacy settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Privacy {
    /// Release mode.
    pub mode: ReleaseMode,
    /// Minimum distinct people per output row (threshold mode).
    pub min_people: u64,
    /// ε per query (DP mode).
    pub epsilon: f64,
    /// ε per analyst per collaboration (DP mode).
    pub budget: f64,
    /// Groups one person may count in (DP mode).
    pub max_groups_per_person: u32,
    /// Rows one person may contribute to one group (DP mode).
    pub max_rows_per_person: u32,
}

impl Default for Privacy {
    fn default() -> Self {
        Self {
            mode: ReleaseMode::Dp,
            min_people: 50,
            epsilon: 0.5,
            budget: 10.0,
            max_groups_per_person: 1,
            max_rows_per_person: 10,
        }
    }
}

/// The aggregates a measure may allow.
pub const AGGREGATES: [&str; 5] = ["count", "sum", "avg", "min", "max"];

/// A checked table.
#[derive(Debug, Clone)]
pub struct Table {
    /// Name within the party.
    pub name: String,
    /// Path as written (relative to the spec file).
    pub path: String,
    /// Record id column (always present in a party's identity table).
    pub record_id: Option<String>,
    /// Identifier columns.
    pub identifiers: Vec<Identifier>,
    /// Dimension columns.
    pub dimensions: Vec<String>,
    /// Measure columns.
    pub measures: Vec<String>,
    /// Timestamp columns.
    pub timestamps: Vec<String>,
    /// Value bounds per measure.
    pub bounds: BTreeMap<String, (i64, i64)>,
    /// Aggregates allowed per measure (every measure has an entry).
    pub aggregates: BTreeMap<String, Vec<String>>,
    /// Days rows are kept (by the first timestamp column); `None`: no limit.
    pub retention_days: Option<u32>,
    /// Consent scopes (`analytics`, `activation`); `None`: no restriction declared.
    pub consent: Option<BTreeSet<String>>,
    /// Identity table: the column marking opted-out records.
    pub opt_out_column: Option<String>,
}

impl Table {
    /// Whether the dataset's consent scope allows activation (audience delivery, RTA).
    pub fn allows_activation(&self) -> bool {
        self.consent
            .as_ref()
            .is_none_or(|c| c.contains("activation"))
    }
}

/// What a device column's rows are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceKinds {
    /// Every row is this type.
    Fixed(DeviceType),
    /// Each row's type is in this column.
    Column(String),
}

/// A checked identifier column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identifier {
    /// The column.
    pub column: String,
    /// Its type. For a device column whose rows name their own type
    /// (`DeviceKinds::Column`) only the family is meaningful; `devices` says which.
    pub id_type: IdType,
    /// For device columns, which device types its rows are.
    pub devices: Option<DeviceKinds>,
    /// How values are held.
    pub form: Form,
}

impl Collaboration {
    /// Parses and checks spec text. Errors say where (`party "social", table "users"`) and
    /// what is wrong.
    pub fn parse(text: &str) -> Result<Self> {
        let file: SpecFile = toml::from_str(text).map_err(|e| Error::Spec(e.to_string()))?;
        Self::check(file)
    }

    fn check(file: SpecFile) -> Result<Self> {
        let bad = |msg: String| Err(Error::Spec(msg));
        if file.collaboration.id.trim().is_empty() {
            return bad("collaboration.id is empty".into());
        }
        if file.parties.len() < 2 {
            return bad(format!(
                "a collaboration needs at least two parties; this one has {}",
                file.parties.len()
            ));
        }
        if file.parties.len() > 64 {
            return bad(format!(
                "at most 64 parties; this one has {}",
                file.parties.len()
            ));
        }
        let mut names = BTreeSet::new();
        let mut parties = Vec::new();
        for p in file.parties {
            let here = format!("party {:?}", p.name);
            let name_ok = !p.name.is_empty()
                && p.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !name_ok {
                return bad(format!(
                    "{here}: a party name uses lower-case letters, digits and _ only"
                ));
            }
            if !names.insert(p.name.clone()) {
                return bad(format!("{here} is listed twice"));
            }
            let mut tables = Vec::new();
            let mut table_names = BTreeSet::new();
            for t in p.tables {
                let here = format!("{here}, table {:?}", t.name);
                if !table_names.insert(t.name.clone()) {
                    return bad(format!("{here} is listed twice"));
                }
                let mut roles: BTreeMap<&str, &str> = BTreeMap::new();
                match &t.record_id {
                    Some(r) => {
                        roles.insert(r, "record_id");
                    }
                    None if !t.identifiers.is_empty() => {
                        return bad(format!(
                            "{here}: a table with identifiers needs record_id, the column that identifies each record"
                        ));
                    }
                    None => {}
                }
                let mut identifiers = Vec::new();
                for i in &t.identifiers {
                    identifiers.push(check_identifier(i, &here)?);
                    if let Some(c) = &i.device_type_column {
                        roles.insert(c, "device_type_column");
                    }
                }
                for (list, role) in [
                    (
                        t.identifiers.iter().map(|i| &i.column).collect::<Vec<_>>(),
                        "identifier",
                    ),
                    (t.dimensions.iter().collect(), "dimension"),
                    (t.measures.iter().collect(), "measure"),
                    (t.timestamps.iter().collect(), "timestamp"),
                ] {
                    for c in list {
                        if let Some(prev) = roles.insert(c, role) {
                            return bad(format!(
                                "{here}: column {c:?} has two roles ({prev} and {role}); give it one"
                            ));
                        }
                    }
                }
                let mut bounds = BTreeMap::new();
                for (c, [lo, hi]) in &t.bounds {
                    if !t.measures.contains(c) {
                        return bad(format!(
                            "{here}: bounds given for {c:?}, which is not one of the measures"
                        ));
                    }
                    if lo > hi {
                        return bad(format!(
                            "{here}: bounds of {c:?} are [{lo}, {hi}]; the low bound must not exceed the high one"
                        ));
                    }
                    bounds.insert(c.clone(), (*lo, *hi));
                }
                let mut aggregates = BTreeMap::new();
                for m in &t.measures {
                    aggregates.insert(m.clone(), vec!["count".into(), "sum".into(), "avg".into()]);
                }
                for (c, list) in &t.aggregates {
                    if !t.measures.contains(c) {
                        return bad(format!(
                            "{here}: aggregates given for {c:?}, which is not one of the measures"
                        ));
                    }
                    if let Some(a) = list.iter().find(|a| !AGGREGATES.contains(&a.as_str())) {
                        return bad(format!(
                            "{here}: unknown aggregate {a:?} for {c:?} (use {})",
                            AGGREGATES.join(", ")
                        ));
                    }
                    aggregates.insert(c.clone(), list.clone());
                }
                let path_ok = t.path.ends_with(".csv") || t.path.ends_with(".parquet");
                if !path_ok {
                    return bad(format!(
                        "{here}: path {:?} must be a .csv or .parquet file",
                        t.path
                    ));
                }
                if let Some(0) = t.retention_days {
                    return bad(format!(
                        "{here}: retention_days is 0; give at least 1 day or leave it out"
                    ));
                }
                if t.retention_days.is_some() && t.timestamps.is_empty() {
                    return bad(format!(
                        "{here}: retention_days needs a timestamp column to date the rows by"
                    ));
                }
                let consent = match &t.consent {
                    None => None,
                    Some(list) => {
                        if let Some(c) = list.iter().find(|c| !CONSENT_SCOPES.contains(&c.as_str()))
                        {
                            return bad(format!(
                                "{here}: unknown consent scope {c:?} (use {})",
                                CONSENT_SCOPES.join(", ")
                            ));
                        }
                        Some(list.iter().cloned().collect::<BTreeSet<_>>())
                    }
                };
                if t.opt_out_column.is_some() && t.identifiers.is_empty() {
                    return bad(format!(
                        "{here}: opt_out_column belongs on the party's table with identifiers"
                    ));
                }
                if let Some(c) = &t.opt_out_column
                    && matches!(
                        roles.get(c.as_str()),
                        Some(&"identifier" | &"record_id" | &"device_type_column")
                    )
                {
                    return bad(format!(
                        "{here}: opt_out_column {c:?} is an identifier column; name the column that flags opt-outs"
                    ));
                }
                tables.push(Table {
                    name: t.name,
                    path: t.path,
                    record_id: t.record_id,
                    identifiers,
                    dimensions: t.dimensions,
                    measures: t.measures,
                    timestamps: t.timestamps,
                    bounds,
                    aggregates,
                    retention_days: t.retention_days,
                    consent,
                    opt_out_column: t.opt_out_column,
                });
            }
            let (with_ids, others): (Vec<Table>, Vec<Table>) =
                tables.into_iter().partition(|t| !t.identifiers.is_empty());
            let mut with_ids = with_ids.into_iter();
            let identity = match (with_ids.next(), with_ids.next()) {
                (Some(t), None) => t,
                (None, _) => {
                    return bad(format!(
                        "{here}: no table has identifier columns; exactly one must"
                    ));
                }
                (Some(a), Some(b)) => {
                    return bad(format!(
                        "{here}: tables {:?} and {:?} both have identifier columns; exactly one may (join the others to it by record_id)",
                        a.name, b.name
                    ));
                }
            };
            let privacy = check_privacy(p.privacy.as_ref(), &here)?;
            parties.push(Party {
                name: p.name,
                identity,
                tables: others,
                privacy,
            });
        }
        if let Some(h) = &file.collaboration.host
            && !parties.iter().any(|p| &p.name == h)
        {
            return bad(format!(
                "collaboration.host {h:?} is not one of the parties"
            ));
        }
        Ok(Self {
            id: file.collaboration.id,
            description: file.collaboration.description,
            host: file.collaboration.host,
            parties,
        })
    }

    /// The collaboration id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The host party, if the spec names one.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The description.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The parties, in spec order.
    pub fn parties(&self) -> &[Party] {
        &self.parties
    }

    /// The digests each identifier type is matched through: those that some party holds
    /// its values pre-hashed in, or SHA-256 where every party holds raw values.
    pub fn digests_for(&self, id_type: IdType) -> Vec<DigestKind> {
        let mut kinds: BTreeSet<DigestKind> = BTreeSet::new();
        for p in &self.parties {
            for i in &p.identity.identifiers {
                if i.id_type.family() == id_type.family() {
                    match i.form {
                        Form::Md5 => {
                            kinds.insert(DigestKind::Md5);
                        }
                        Form::Sha256 => {
                            kinds.insert(DigestKind::Sha256);
                        }
                        _ => {}
                    }
                }
            }
        }
        if kinds.is_empty() {
            kinds.insert(DigestKind::Sha256);
        }
        kinds.into_iter().collect()
    }
}

fn check_privacy(p: Option<&PrivacySection>, here: &str) -> Result<Privacy> {
    let mut out = Privacy::default();
    let Some(p) = p else { return Ok(out) };
    let bad = |msg: String| Err(Error::Spec(format!("{here}, privacy: {msg}")));
    match p.mode.as_deref() {
        None | Some("dp") => {}
        Some("threshold") => out.mode = ReleaseMode::Threshold,
        Some(other) => return bad(format!("unknown mode {other:?} (use dp or threshold)")),
    }
    if let Some(k) = p.min_people {
        if k < 2 {
            return bad(format!("min_people is {k}; it must be at least 2"));
        }
        out.min_people = k;
    }
    for (name, v, slot) in [
        ("epsilon", p.epsilon, &mut out.epsilon),
        ("budget", p.budget, &mut out.budget),
    ] {
        if let Some(v) = v {
            if !(v.is_finite() && v > 0.0 && v <= 100.0) {
                return bad(format!("{name} is {v}; it must be above 0 and at most 100"));
            }
            *slot = v;
        }
    }
    if out.epsilon > out.budget {
        return bad(format!(
            "epsilon per query ({}) is larger than the budget ({})",
            out.epsilon, out.budget
        ));
    }
    for (name, v, slot) in [
        (
            "max_groups_per_person",
            p.max_groups_per_person,
            &mut out.max_groups_per_person,
        ),
        (
            "max_rows_per_person",
            p.max_rows_per_person,
            &mut out.max_rows_per_person,
        ),
    ] {
        if let Some(v) = v {
            if !(1..=1000).contains(&v) {
                return bad(format!("{name} is {v}; it must be between 1 and 1000"));
            }
            *slot = v;
        }
    }
    Ok(out)
}

fn check_identifier(i: &IdentifierSection, here: &str) -> Result<Identifier> {
    let here = format!("{here}, identifier {:?}", i.column);
    let form = match i.form.as_str() {
        "raw" => Form::Raw,
        "md5" => Form::Md5,
        "sha256" => Form::Sha256,
        other => {
            return Err(Error::Spec(format!(
                "{here}: unknown form {other:?} (use raw, md5 or sha256)"
            )));
        }
    };
    let (id_type, devices) = match i.id_type.as_str() {
        "phone" => (IdType::Phone, None),
        "email" => (IdType::Email, None),
        "opaque" => (IdType::Opaque, None),
        "device" => match &i.device_type_column {
            Some(c) => (
                IdType::Device(DeviceType::Imei),
                Some(DeviceKinds::Column(c.clone())),
            ),
            None => {
                return Err(Error::Spec(format!(
                    "{here}: type \"device\" needs device_type_column, or name the type (\"device:idfa\", …)"
                )));
            }
        },
        other => match other.strip_prefix("device:").and_then(DeviceType::parse) {
            Some(d) if i.device_type_column.is_none() => {
                (IdType::Device(d), Some(DeviceKinds::Fixed(d)))
            }
            Some(_) => {
                return Err(Error::Spec(format!(
                    "{here}: give either a device type in `type` or device_type_column, not both"
                )));
            }
            None => {
                return Err(Error::Spec(format!(
                    "{here}: unknown type {other:?} (use phone, email, device, device:imei|oaid|idfa|caid|mac or opaque)"
                )));
            }
        },
    };
    if i.device_type_column.is_some() && devices.is_none() {
        return Err(Error::Spec(format!(
            "{here}: device_type_column is only for type \"device\""
        )));
    }
    Ok(Identifier {
        column: i.column.clone(),
        id_type,
        devices,
        form,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[collaboration]
id = "c1"

[[party]]
name = "a"
[[party.table]]
name = "users"
path = "a.csv"
record_id = "id"
dimensions = ["age"]
[[party.table.identifier]]
column = "phone"
type = "phone"

[[party]]
name = "b"
[[party.table]]
name = "users"
path = "b.parquet"
record_id = "id"
[[party.table.identifier]]
column = "phone_md5"
type = "phone"
form = "md5"
[[party.table.identifier]]
column = "dev"
type = "device"
device_type_column = "dev_type"
"#;

    #[test]
    fn a_minimal_spec_parses() {
        let c = Collaboration::parse(MINIMAL).unwrap();
        assert_eq!(c.parties().len(), 2);
        assert_eq!(c.digests_for(IdType::Phone), vec![DigestKind::Md5]);
        assert_eq!(c.digests_for(IdType::Email), vec![DigestKind::Sha256]);
        assert_eq!(
            c.parties()[1].identity.identifiers[1].devices,
            Some(DeviceKinds::Column("dev_type".into()))
        );
    }

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("../../../docs/collaboration-spec.md");
        let start = doc.find("```toml").expect("a toml block") + "```toml".len();
        let end = start + doc[start..].find("```").expect("its end");
        let c = Collaboration::parse(&doc[start..end]).unwrap();
        assert_eq!(c.id(), "aurora-2026h1");
        assert_eq!(c.parties()[0].tables[0].timestamps, vec!["ts".to_string()]);
    }

    fn err(text: &str) -> String {
        Collaboration::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn data_rights_fields_parse_and_are_checked() {
        let with = MINIMAL.replace(
            "dimensions = [\"age\"]",
            "dimensions = [\"age\", \"flag\"]\nconsent = [\"analytics\"]\nopt_out_column = \"flag\"",
        );
        let c = Collaboration::parse(&with).unwrap();
        let t = &c.parties()[0].identity;
        assert!(!t.allows_activation());
        assert_eq!(t.opt_out_column.as_deref(), Some("flag"));
        assert!(c.parties()[1].identity.allows_activation());
        let bad_scope = MINIMAL.replace("dimensions = [\"age\"]", "consent = [\"ads\"]");
        assert!(err(&bad_scope).contains("unknown consent scope \"ads\""));
        let no_ts = MINIMAL.replace("dimensions = [\"age\"]", "retention_days = 30");
        assert!(err(&no_ts).contains("retention_days needs a timestamp"));
        let zero = MINIMAL.replace(
            "dimensions = [\"age\"]",
            "timestamps = [\"ts\"]\nretention_days = 0",
        );
        assert!(err(&zero).contains("retention_days is 0"));
        let id_col = MINIMAL.replace("dimensions = [\"age\"]", "opt_out_column = \"phone\"");
        assert!(err(&id_col).contains("is an identifier column"));
    }

    #[test]
    fn mistakes_are_named() {
        assert!(
            err(&MINIMAL.replace(
                "record_id = \"id\"\ndimensions",
                "recordid = \"id\"\ndimensions"
            ))
            .contains("unknown field")
        );
        assert!(
            err(&MINIMAL.replace("form = \"md5\"", "form = \"sha1\""))
                .contains("unknown form \"sha1\"")
        );
        assert!(
            err(&MINIMAL.replace("type = \"phone\"\n\n", "type = \"fax\"\n\n"))
                .contains("unknown type \"fax\"")
        );
        assert!(err(&MINIMAL.replace("name = \"b\"", "name = \"a\"")).contains("listed twice"));
        assert!(
            err(&MINIMAL.replace("dimensions = [\"age\"]", "dimensions = [\"phone\"]"))
                .contains("two roles (identifier and dimension)")
        );
        assert!(
            err(&MINIMAL.replace("device_type_column = \"dev_type\"", ""))
                .contains("needs device_type_column")
        );
        assert!(err(&MINIMAL.replace("a.csv", "a.xlsx")).contains(".csv or .parquet"));
    }
}
