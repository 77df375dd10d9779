//! Delivery: an audience materialised at its activation party as that party's own
//! user ids, one Parquet file per version, and the RTA index built from what was
//! delivered.
//!
//! Local-mode layout under the state folder:
//!
//! ```text
//! audiences/<name>/definition.toml     the definition (host)
//! audiences/<name>/versions.json       each version: when, view, size class, released size
//! delivered/<party>/<name>/v<N>.parquet   the party's user ids (the party's area)
//! delivered/<party>/<name>/manifest.json  versions, files, users, SHA-256
//! ```
//!
//! Files are written to a temporary name and renamed into place. Nothing about people
//! reaches any party but the activation party, and it receives only its own ids.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jingteng_engine::Engine;
use jingteng_engine::datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use jingteng_engine::datafusion::arrow::datatypes::{DataType, Field, Schema, UInt64Type};
use jingteng_engine::datafusion::parquet::arrow::ArrowWriter;
use jingteng_engine::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use jingteng_psi::{Collaboration, DeviceKinds, DeviceType, IdType};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::definition::Definition;
use crate::evaluate::{Evaluation, SizeRelease, evaluate, release_size};
use crate::lookalike::LookalikeReport;
use crate::rta::{CampaignList, DeviceMd5, RtaIndex};
use crate::{Error, Result, io};

/// One delivered version, as the host records it (no exact size: the size class and
/// the released size).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionRecord {
    /// Version, from 1.
    pub version: u32,
    /// When it was delivered, Unix ms.
    pub created_ms: i64,
    /// The view it was evaluated on.
    pub view_fingerprint: String,
    /// The party it was delivered to.
    pub to: String,
    /// Its file, relative to the state folder.
    pub file: String,
    /// Size class.
    pub size_class: String,
    /// The size as released through the engine.
    pub released_people: Option<i64>,
    /// How the size was released (`dp` or `threshold`).
    pub release_mode: String,
    /// The look-alike's held-out figures, when it has one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lookalike: Option<LookalikeReport>,
}

/// The activation party's manifest of one audience.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Manifest {
    audience: String,
    party: String,
    versions: Vec<DeliveredVersion>,
}

/// One version of an audience as its activation party holds it (its manifest entry).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeliveredVersion {
    /// Version, from 1 (the host's numbering).
    pub version: u32,
    /// Its file, relative to the audience's folder (`v<N>.parquet`).
    pub file: String,
    /// User ids in it.
    pub users: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// When it was written, Unix ms.
    pub created_ms: i64,
}

/// The audiences kept under a state folder.
#[derive(Debug, Clone)]
pub struct Store {
    state: PathBuf,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(())
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(v).map_err(|e| Error::Internal(e.to_string()))
}

fn read_json<T: for<'de> Deserialize<'de> + Default>(path: &Path) -> Result<T> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(Error::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

impl Store {
    /// The store in `state` (the folder `jingteng query` keeps its view and catalog in).
    pub fn new(state: impl Into<PathBuf>) -> Self {
        Self {
            state: state.into(),
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.state.join("audiences").join(name)
    }

    fn delivered_dir(&self, party: &str, name: &str) -> PathBuf {
        self.state.join("delivered").join(party).join(name)
    }

    /// Saves (or replaces) a definition; the next delivery uses it.
    pub fn save(&self, def: &Definition) -> Result<()> {
        write_atomic(
            &self.dir(def.name()).join("definition.toml"),
            def.to_toml()?.as_bytes(),
        )
    }

    /// A saved definition.
    pub fn definition(&self, name: &str) -> Result<Definition> {
        let path = self.dir(name).join("definition.toml");
        match std::fs::read_to_string(&path) {
            Ok(text) => Definition::parse_toml(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::Unknown(name.to_string()))
            }
            Err(e) => Err(Error::Io { path, source: e }),
        }
    }

    /// The delivered versions of an audience, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<VersionRecord>> {
        read_json(&self.dir(name).join("versions.json"))
    }

    /// Names of the saved audiences.
    pub fn names(&self) -> Result<Vec<String>> {
        let dir = self.state.join("audiences");
        let mut out = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for e in entries {
                    let e = e.map_err(io(&dir))?;
                    if e.path().join("definition.toml").exists() {
                        out.push(e.file_name().to_string_lossy().to_string());
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Io {
                    path: dir,
                    source: e,
                });
            }
        }
        out.sort();
        Ok(out)
    }

    /// The user ids of a delivered version, read from the activation party's area
    /// (what the media party holds).
    pub fn delivered_ids(&self, record: &VersionRecord) -> Result<Vec<String>> {
        read_ids(&self.state.join(&record.file))
    }

    /// Every delivered version file at `party`: (audience, version, path).
    pub(crate) fn delivered_files(&self, party: &str) -> Result<Vec<(String, u32, PathBuf)>> {
        let dir = self.state.join("delivered").join(party);
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => {
                return Err(Error::Io {
                    path: dir,
                    source: e,
                });
            }
        };
        for e in entries {
            let e = e.map_err(io(&dir))?;
            let name = e.file_name().to_string_lossy().to_string();
            let m: Manifest = read_json(&e.path().join("manifest.json"))?;
            for v in m.versions {
                out.push((name.clone(), v.version, e.path().join(&v.file)));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Appends a version record to an audience's history (a networked host records
    /// what it delivered through the node API this way).
    pub fn record_version(&self, name: &str, record: VersionRecord) -> Result<()> {
        let mut versions = self.versions(name)?;
        versions.retain(|v| v.version != record.version);
        versions.push(record);
        versions.sort_by_key(|v| v.version);
        write_atomic(&self.dir(name).join("versions.json"), &json(&versions)?)
    }

    /// Writes version `version` of audience `name` at activation party `party`: its
    /// user ids (column `id_column`) as `delivered/<party>/<name>/v<N>.parquet` and its
    /// manifest entry (replacing an entry of the same version, which the host never
    /// recorded), both atomically. Returns the entry.
    pub fn write_delivered(
        &self,
        party: &str,
        name: &str,
        version: u32,
        id_column: &str,
        ids: &[String],
        created_ms: i64,
    ) -> Result<DeliveredVersion> {
        let dir = self.delivered_dir(party, name);
        let file = format!("v{version}.parquet");
        let sha = write_ids(&dir.join(&file), id_column, ids)?;
        let mpath = dir.join("manifest.json");
        let mut manifest: Manifest = read_json(&mpath)?;
        manifest.audience = name.to_string();
        manifest.party = party.to_string();
        let entry = DeliveredVersion {
            version,
            file,
            users: ids.len() as u64,
            sha256: sha,
            created_ms,
        };
        manifest.versions.retain(|v| v.version != version);
        manifest.versions.push(entry.clone());
        manifest.versions.sort_by_key(|v| v.version);
        write_atomic(&mpath, &json(&manifest)?)?;
        Ok(entry)
    }

    /// The audiences delivered to `party` in this store, by name, each with its
    /// versions (oldest first) as the party's manifest lists them.
    pub fn delivered(&self, party: &str) -> Result<Vec<(String, Vec<DeliveredVersion>)>> {
        let dir = self.state.join("delivered").join(party);
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => {
                return Err(Error::Io {
                    path: dir,
                    source: e,
                });
            }
        };
        for e in entries {
            let e = e.map_err(io(&dir))?;
            let m: Manifest = read_json(&e.path().join("manifest.json"))?;
            if !m.versions.is_empty() {
                out.push((e.file_name().to_string_lossy().to_string(), m.versions));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The user ids of version `version` of audience `name` delivered to `party`.
    pub fn delivered_version_ids(
        &self,
        party: &str,
        name: &str,
        version: u32,
    ) -> Result<Vec<String>> {
        read_ids(
            &self
                .delivered_dir(party, name)
                .join(format!("v{version}.parquet")),
        )
    }

    /// Rewrites every version delivered to `party` without the user ids in `gone` (a
    /// deletion at the activation party); returns the entries removed.
    pub fn remove_delivered(
        &self,
        party: &str,
        gone: &HashSet<String>,
        id_column: &str,
    ) -> Result<u64> {
        let mut removed = 0u64;
        for (name, version, file) in self.delivered_files(party)? {
            let ids = read_ids(&file)?;
            let kept: Vec<String> = ids.iter().filter(|i| !gone.contains(*i)).cloned().collect();
            if kept.len() != ids.len() {
                removed += (ids.len() - kept.len()) as u64;
                self.rewrite_delivered(party, &name, version, id_column, &kept)?;
            }
        }
        Ok(removed)
    }

    /// Rewrites a delivered version's file and manifest entry with `ids` (a deletion).
    pub(crate) fn rewrite_delivered(
        &self,
        party: &str,
        name: &str,
        version: u32,
        id_column: &str,
        ids: &[String],
    ) -> Result<()> {
        let dir = self.delivered_dir(party, name);
        let file = format!("v{version}.parquet");
        let sha = write_ids(&dir.join(&file), id_column, ids)?;
        let mpath = dir.join("manifest.json");
        let mut m: Manifest = read_json(&mpath)?;
        for v in m.versions.iter_mut().filter(|v| v.version == version) {
            v.users = ids.len() as u64;
            v.sha256 = sha.clone();
        }
        write_atomic(&mpath, &json(&m)?)
    }
}

fn write_ids(path: &Path, column: &str, ids: &[String]) -> Result<String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let schema = Arc::new(Schema::new(vec![Field::new(column, DataType::Utf8, false)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(ids.to_vec()))],
    )?;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut w = ArrowWriter::try_new(file, schema, None)?;
    w.write(&batch)?;
    w.close()?;
    let bytes = std::fs::read(&tmp).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    Ok(Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

pub(crate) fn read_ids_pub(path: &Path) -> Result<Vec<String>> {
    read_ids(path)
}

fn read_ids(path: &Path) -> Result<Vec<String>> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let mut out = Vec::new();
    for b in reader {
        let b = b?;
        let c = b.column(0).as_string::<i32>();
        out.extend(
            (0..c.len())
                .filter(|i| c.is_valid(*i))
                .map(|i| c.value(i).to_string()),
        );
    }
    Ok(out)
}

/// A party's records as the view build kept them: (record id, person, suppressed).
pub(crate) fn records(view_dir: &Path, party: &str) -> Result<Vec<(String, u64, bool)>> {
    let path = jingteng_engine::view::records_path(view_dir, party);
    let file = std::fs::File::open(&path).map_err(io(&path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let mut out = Vec::new();
    for b in reader {
        let b = b?;
        let ids = b.column(0).as_string::<i32>();
        let persons = b.column(1).as_primitive::<UInt64Type>();
        let supp = b.column(2).as_boolean();
        for i in 0..b.num_rows() {
            out.push((ids.value(i).to_string(), persons.value(i), supp.value(i)));
        }
    }
    Ok(out)
}

/// Refuses when a dataset the audience reads (`tables`, and every table of the
/// activation party for a look-alike) does not allow activation in its consent scope.
pub fn check_consent(collab: &Collaboration, def: &Definition, tables: &[String]) -> Result<()> {
    for p in collab.parties() {
        for t in p.all_tables() {
            let name = format!("{}.{}", p.name, t.name);
            let used =
                tables.contains(&name) || (def.lookalike().is_some() && p.name == def.activate());
            if used && !t.allows_activation() {
                return Err(Error::Consent {
                    audience: def.name().to_string(),
                    table: name,
                    scopes: t
                        .consent
                        .iter()
                        .flatten()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
    }
    Ok(())
}

/// What a delivery did.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// The version written.
    pub record: VersionRecord,
    /// The size release.
    pub size: SizeRelease,
    /// Rules and the SQL they ran as.
    pub rules: Vec<(String, String)>,
}

/// Evaluates `def` on the engine's view (`view_dir` is the state folder the view was
/// built in), checks the consent scope of every dataset it reads, releases its size as
/// `analyst`, and writes the next version at the activation party as its own user ids.
/// `now` is Unix seconds (the clock of `within N days` when the definition sets no
/// `as_of`, and the version's time).
#[allow(clippy::too_many_arguments)]
pub async fn deliver(
    engine: &mut Engine,
    collab: &Collaboration,
    view_dir: &Path,
    store: &Store,
    def: &Definition,
    analyst: &str,
    now: i64,
    default_min: Option<u64>,
) -> Result<Delivery> {
    let tables: Vec<String> = def.tables(engine.policy()).into_iter().collect();
    check_consent(collab, def, &tables)?;
    let eval: Evaluation = evaluate(engine, def, now, default_min).await?;
    let size = release_size(engine, &eval, analyst).await?;
    let party = collab
        .parties()
        .iter()
        .find(|p| p.name == def.activate())
        .ok_or_else(|| Error::Definition(format!("no party {:?}", def.activate())))?;
    let id_column = party
        .identity
        .record_id
        .clone()
        .ok_or_else(|| Error::Internal("identity table without record_id".into()))?;
    let members: HashSet<u64> = eval.members().iter().copied().collect();
    let mut ids: Vec<String> = records(view_dir, &party.name)?
        .into_iter()
        .filter(|(_, p, suppressed)| !suppressed && members.contains(p))
        .map(|(id, _, _)| id)
        .collect();
    ids.sort();
    let mut versions = store.versions(def.name())?;
    let version = versions.last().map_or(1, |v| v.version + 1);
    let created_ms = now.saturating_mul(1000);
    let entry = store.write_delivered(
        &party.name,
        def.name(),
        version,
        &id_column,
        &ids,
        created_ms,
    )?;
    let file = entry.file;
    let rel = PathBuf::from("delivered")
        .join(&party.name)
        .join(def.name())
        .join(&file);
    let record = VersionRecord {
        version,
        created_ms,
        view_fingerprint: engine.fingerprint().to_string(),
        to: party.name.clone(),
        file: rel.to_string_lossy().to_string(),
        size_class: eval.size_class(),
        released_people: size.people,
        release_mode: size.release.mode.clone(),
        lookalike: eval.lookalike().cloned(),
    };
    versions.push(record.clone());
    store.save(def)?;
    write_atomic(
        &store.dir(def.name()).join("versions.json"),
        &json(&versions)?,
    )?;
    Ok(Delivery {
        record,
        size,
        rules: eval.rules().to_vec(),
    })
}

/// What an RTA build from delivered audiences holds.
#[derive(Debug, Clone, Serialize)]
pub struct RtaBuild {
    /// Campaigns (one per audience: its latest version), by name.
    pub campaigns: Vec<String>,
    /// Users listed (before suppression).
    pub listed: u64,
    /// Devices on the suppression list.
    pub suppressed: u64,
    /// Users without a valid device id (they cannot be asked about).
    pub without_device: u64,
}

/// Each user's device MD5 in `party`'s identity table read from `path` (the spec's
/// file or the node's import of it): record id → the MD5 of its canonical device id,
/// as the media platform computes it. Users without a valid device id are left out.
/// An error if the identity table has no device identifier.
pub fn device_md5s(
    collab: &Collaboration,
    party: &str,
    path: &Path,
) -> Result<HashMap<String, DeviceMd5>> {
    let p = collab
        .parties()
        .iter()
        .find(|p| p.name == party)
        .ok_or_else(|| Error::Definition(format!("no party {party:?}")))?;
    let rid = p
        .identity
        .record_id
        .clone()
        .ok_or_else(|| Error::Internal("identity table without record_id".into()))?;
    let device = p
        .identity
        .identifiers
        .iter()
        .find(|i| matches!(i.id_type, IdType::Device(_)) || i.devices.is_some())
        .ok_or_else(|| {
            Error::Definition(format!(
                "party {party:?} has no device identifier; RTA asks by device id"
            ))
        })?;
    let mut cols = vec![rid, device.column.clone()];
    let fixed = match (&device.devices, device.id_type) {
        (Some(DeviceKinds::Column(c)), _) => {
            cols.push(c.clone());
            None
        }
        (Some(DeviceKinds::Fixed(k)), _) => Some(*k),
        (None, IdType::Device(k)) => Some(k),
        _ => None,
    };
    let mut md5_of: HashMap<String, DeviceMd5> = HashMap::new();
    let mut reader = jingteng_match::read::ColumnReader::open(path, &cols)
        .map_err(|e| Error::Engine(jingteng_engine::Error::Match(e)))?;
    while let Some(batch) = reader
        .next_batch()
        .map_err(|e| Error::Engine(jingteng_engine::Error::Match(e)))?
    {
        for i in 0..batch[0].len() {
            let (Some(id), Some(raw)) = (
                jingteng_match::read::cell(&batch[0], i),
                jingteng_match::read::cell(&batch[1], i),
            ) else {
                continue;
            };
            let kind = fixed.or_else(|| {
                batch
                    .get(2)
                    .and_then(|c| jingteng_match::read::cell(c, i))
                    .and_then(DeviceType::parse)
            });
            if let Some(md5) = kind.and_then(|k| DeviceMd5::of_device(k, raw).ok()) {
                md5_of.insert(id.to_string(), md5);
            }
        }
    }
    Ok(md5_of)
}

/// Builds an RTA index of the audiences delivered to `party`, each the latest version
/// as a campaign of one tier (multiplier 1), keyed by the MD5 of the user's device id
/// as the media platform sends it; the devices of users who opted out or were deleted
/// (anywhere in the collaboration) are suppressed. `spec_dir` is where the spec's
/// paths are relative to (the party's own users file gives each user's device).
pub fn rta_index(
    store: &Store,
    collab: &Collaboration,
    spec_dir: &Path,
    view_dir: &Path,
    party: &str,
) -> Result<(RtaIndex, RtaBuild)> {
    let p = collab
        .parties()
        .iter()
        .find(|p| p.name == party)
        .ok_or_else(|| Error::Definition(format!("no party {party:?}")))?;
    let md5_of = device_md5s(collab, party, &spec_dir.join(&p.identity.path))?;
    let suppressed: Vec<DeviceMd5> = records(view_dir, party)?
        .into_iter()
        .filter(|(_, _, s)| *s)
        .filter_map(|(id, _, _)| md5_of.get(&id).copied())
        .collect();
    let mut latest: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (name, _, file) in store.delivered_files(party)? {
        latest.insert(name, file);
    }
    let (mut lists, mut listed, mut without) = (Vec::new(), 0u64, 0u64);
    for (name, file) in &latest {
        let ids = read_ids(file)?;
        listed += ids.len() as u64;
        let members: Vec<DeviceMd5> = ids
            .iter()
            .filter_map(|id| {
                let m = md5_of.get(id).copied();
                if m.is_none() {
                    without += 1;
                }
                m
            })
            .collect();
        lists.push(CampaignList::new(name.clone()).tier(1.0, members));
    }
    let index = RtaIndex::build(lists, &suppressed)?;
    Ok((
        index,
        RtaBuild {
            campaigns: latest.into_keys().collect(),
            listed,
            suppressed: suppressed.len() as u64,
            without_device: without,
        },
    ))
}
