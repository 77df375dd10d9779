//! A Jingteng node's home: its data directory, its identity and its secrets.
//!
//! `jingteng init` lays out a data directory:
//!
//! ```text
//! DIR/node.toml            configuration: party name, listen address, file locations,
//!                          the public signing key (no secrets, ever)
//! DIR/catalog.sqlite       the catalog and audit log (jingteng-catalog)
//! DIR/tables/              imported tables (Parquet, versioned)
//! DIR/tls/cert.pem         the node's self-signed TLS certificate (public)
//! DIR/secrets/             mode 0700
//!     signing.key          Ed25519 signing key (hex), mode 0600
//!     tls.key.pem          TLS private key, mode 0600
//!     rta.key              a media node's RTA key (hex), mode 0600, made on first need
//!     dashboard-operator.token, dashboard-analyst.token
//!                          the web dashboard's access tokens, mode 0600
//! ```
//!
//! Secrets are read only from those files (refused when group or others can read them)
//! or from the environment (`JINGTENG_SIGNING_KEY`), held zeroised, and never printed.

mod audiences;
pub mod contract;
mod dashboard;
mod import;
mod netmatch;
mod refresh;
mod remote;
mod retry;
mod rights;
mod rta;
mod server;
mod share;
mod tls;

// The web dashboard (a loopback HTTP listener `serve` starts when node.toml sets
// `dashboard`): its tokens, its address and URL, and serving it alone.
pub use dashboard::{
    ANALYST_TOKEN_FILE, DashboardTokens, OPERATOR_TOKEN_FILE, Role, Token, dashboard_addr,
    dashboard_tokens, dashboard_url, serve_dashboard,
};
pub use import::{Imported, import};
pub use netmatch::RunStatus;

/// Checks a part of a shared table as the host receives it, against the schema the spec
/// gives it (exposed for fuzzing): its rows, or what is wrong.
pub fn check_shared_part(
    schema: &arrow::datatypes::SchemaRef,
    bytes: &[u8],
) -> std::result::Result<u64, String> {
    share::check_part(schema, bytes)
}

/// The schema a member's part of `party.table` must have (exposed for fuzzing).
pub fn shared_part_schema(
    collab: &jingteng_psi::Collaboration,
    party: &str,
    table: &str,
) -> Option<arrow::datatypes::SchemaRef> {
    share::expected_schema(collab, party, table)
}

/// The spec of active collaboration `id`: the one its signed contract in this node's
/// catalog holds. An unknown, unsigned or changed contract is an error.
pub fn collaboration(node: &NodeDir, id: &str) -> Result<jingteng_psi::Collaboration> {
    let body = server::active_contract(node, id)?;
    jingteng_psi::Collaboration::parse(&body.spec)
        .map_err(|e| Error::Contract(format!("the contract's spec: {e}")))
}

/// Decodes a member's match contribution as the host receives it (exposed for fuzzing).
pub fn decode_contribution(
    bytes: &[u8],
) -> std::result::Result<jingteng_match::PartyContribution, String> {
    netmatch::decode_contribution(bytes)
}
// Audiences across nodes: a member's requests to the host, the host's answers, the
// host → activation party message (exposed for fuzzing) and what a node holds.
pub use audiences::{
    ACTIVATION_TYPE, ActivationBatch, ActivationError, ActivationHeader, AudienceCreated,
    AudienceDelivered, AudienceDetail, AudienceSummary, CreateAudience, DeliverAudience,
    ForgetHere, MAX_ACTIVATION_ROWS, RuleSql, audience_create, audience_deliver, audience_list,
    audience_show, audiences_dir, delivered_here, delivered_ids, forget_here,
};
// Scheduled refresh of audiences at the host (`refresh = "24h"`).
pub use refresh::RefreshStatus;
// RTA from networked deliveries: the media node's key and device tokens, its message
// to the audience's owner (exposed for fuzzing), and the owner's index of what it holds.
pub use remote::{
    InsightRequest, MeasureRequest, QueryReply, QueryRequest, insight_host, measure_host,
    query_host,
};
pub use retry::RetryPolicy;
pub use rta::{
    MAX_RTA_TOKENS, RTA_TOKENS_TYPE, RtaHeld, RtaPush, TokenHeader, TokenKind, TokenList,
    TokenListError, build_index as rta_index_here, forget_at_owners, rta_held, rta_key,
    rta_live_index, rta_token,
};
pub use server::{
    API_VERSION, PSI_BATCH_TYPE, PSI_KEEP_TYPE, ServeOptions, get_from_peer, post_to_peer, serve,
    serve_with, wire_bytes,
};

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use jingteng_catalog::Catalog;
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Errors of node set-up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be used.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A secret file that others can read.
    #[error("{path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    SecretExposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A contract that cannot be used (unsigned, tampered with, not ours).
    #[error("contract: {0}")]
    Contract(String),
    /// A peer could not be reached or misbehaved.
    #[error("peer {addr}: {message}")]
    Peer {
        /// Its address.
        addr: String,
        /// What happened.
        message: String,
    },
    /// A peer stayed unreachable (or kept failing) through every retry.
    #[error("peer {party} ({addr}): gave up after {attempts} attempts over {seconds:.1} s: {last}")]
    PeerGaveUp {
        /// The member.
        party: String,
        /// Its endpoint.
        addr: String,
        /// Attempts made, the first included.
        attempts: u32,
        /// Seconds from the first attempt to giving up.
        seconds: f64,
        /// The last attempt's failure.
        last: String,
    },
    /// The host of a collaboration refused or failed a request (a query that breaks a
    /// privacy rule, a spent budget, no joined view yet…).
    #[error("the host {host} answered {status} ({code}): {detail}")]
    Remote {
        /// The host party.
        host: String,
        /// The HTTP status.
        status: u16,
        /// The problem's code: `refused`, `resource-limit`, `budget-exhausted`,
        /// `bad-query`, `no-view`, …
        code: String,
        /// The host's explanation (for a refusal: the rule, the column and a hint).
        detail: String,
    },
    /// The node is stopping; the work in progress was abandoned.
    #[error("the node is stopping")]
    Stopped,
    /// The catalog refused.
    #[error(transparent)]
    Catalog(#[from] jingteng_catalog::Error),
    /// The query engine refused or failed (a privacy rule, the budget, a limit…).
    #[error(transparent)]
    Engine(#[from] jingteng_engine::Error),
    /// A bug.
    #[error("internal error (this is a bug): {0}")]
    Internal(String),
}

/// Result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Self::Internal(format!("table data: {e}"))
    }
}

/// Where a host keeps the joined view of a collaboration: `DIR/views/<digest of the
/// id>/joined/` (the latest linked match run's; replaced whole by the next).
pub fn view_dir(dir: &Path, collaboration: &str) -> PathBuf {
    let digest = Sha256::digest(collaboration.as_bytes());
    dir.join("views").join(hex(&digest[..8]))
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// `node.toml`. Paths are relative to the data directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The party this node is (`social`, `retail`, …).
    pub party: String,
    /// Address the node-to-node API listens on. Default: loopback only, so nothing is
    /// exposed until an operator decides to.
    pub listen: String,
    /// The public half of the node's Ed25519 signing key (hex): members pin it when they
    /// sign a collaboration contract.
    pub public_key: String,
    /// The catalog database.
    pub catalog: String,
    /// Where imported tables live.
    pub tables: String,
    /// The node's TLS certificate (PEM).
    pub tls_cert: String,
    /// The TLS private key (PEM, a secret file).
    pub tls_key: String,
    /// The Ed25519 signing key (hex, a secret file); `JINGTENG_SIGNING_KEY` overrides it.
    pub signing_key: String,
    /// Address of the web dashboard (plain HTTP, loopback only), e.g. `127.0.0.1:7480`.
    /// Default: none, so no dashboard runs until an operator sets one. Its tokens are
    /// in `secrets/dashboard-*.token` (docs/dashboard.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard: Option<String>,
}

/// What `init` made.
#[derive(Debug, Clone, Serialize)]
pub struct Initialised {
    /// The data directory.
    pub dir: PathBuf,
    /// The configuration written.
    pub config: NodeConfig,
    /// SHA-256 of the certificate's DER, hex: what peers pin.
    pub cert_sha256: String,
}

/// `N` bytes from exactly `2N` hex digits (surrounding white space ignored).
fn decode_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.trim().as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes a secret file readable by its owner only, failing if it exists.
fn write_secret(path: &Path, content: &[u8]) -> Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| file_err(path, e))?;
    f.write_all(content).map_err(|e| file_err(path, e))?;
    f.sync_all().map_err(|e| file_err(path, e))
}

/// Writes `content` to `path` atomically: into a temporary file beside it (mode 0600),
/// synced, then renamed over `path`, and the directory synced, so a reader (or a node
/// restarted after a crash) sees the old file or the new one, never part of one.
pub(crate) fn write_atomic(path: &Path, content: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| file_err(path, "has no file name"))?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let written = (|| -> std::io::Result<()> {
        let mut f = opts.open(&tmp)?;
        f.write_all(content)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(file_err(&tmp, e));
    }
    fs::rename(&tmp, path).map_err(|e| file_err(path, e))?;
    // The rename itself must reach the disk; a directory that cannot be synced (some
    // file systems) still has the complete file.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Creates `dir` (and its parents) with mode 0700: for files only this node reads.
pub(crate) fn private_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| file_err(dir, e))?;
    }
    Ok(())
}

/// Reads a secret file, refusing one that group or others can read.
pub fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)
            .map_err(|e| file_err(path, e))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Error::SecretExposed {
                path: path.to_path_buf(),
                mode: mode & 0o777,
            });
        }
    }
    Ok(Zeroizing::new(
        fs::read(path).map_err(|e| file_err(path, e))?,
    ))
}

/// Creates a node's data directory for `party` at `dir`. The directory appears only
/// when complete (it is built beside it and renamed into place); an existing node is
/// never overwritten.
pub fn init(dir: &Path, party: &str) -> Result<Initialised> {
    let name_ok = !party.is_empty()
        && party
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !name_ok {
        return Err(Error::File {
            path: dir.to_path_buf(),
            message: format!("party name {party:?}: use lower-case letters, digits and _"),
        });
    }
    if dir.exists()
        && fs::read_dir(dir)
            .map_err(|e| file_err(dir, e))?
            .next()
            .is_some()
    {
        return Err(Error::File {
            path: dir.to_path_buf(),
            message: "exists and is not empty; a node is never initialised over existing files"
                .into(),
        });
    }
    let name = dir
        .file_name()
        .ok_or_else(|| file_err(dir, "has no directory name"))?
        .to_string_lossy()
        .into_owned();
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staging = parent.join(format!(".{name}.init"));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| file_err(&staging, e))?;
    }
    let result = build(&staging, party);
    match result {
        Ok((config, cert_sha256)) => {
            if dir.exists() {
                fs::remove_dir(dir).map_err(|e| file_err(dir, e))?;
            }
            fs::rename(&staging, dir).map_err(|e| file_err(dir, e))?;
            Ok(Initialised {
                dir: dir.to_path_buf(),
                config,
                cert_sha256,
            })
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

fn build(dir: &Path, party: &str) -> Result<(NodeConfig, String)> {
    for sub in ["tables", "tls", "secrets"] {
        let p = dir.join(sub);
        fs::create_dir_all(&p).map_err(|e| file_err(&p, e))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("secrets");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).map_err(|e| file_err(&p, e))?;
    }

    let mut seed = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng
        .try_fill_bytes(seed.as_mut())
        .map_err(|e| Error::Internal(format!("the operating system's RNG failed: {e}")))?;
    let signing = SigningKey::from_bytes(&seed);
    let public_key = hex(signing.verifying_key().as_bytes());
    write_secret(
        &dir.join("secrets/signing.key"),
        Zeroizing::new(hex(seed.as_ref())).as_bytes(),
    )?;

    let key_pair = rcgen::KeyPair::generate().map_err(|e| Error::Internal(e.to_string()))?;
    let mut params =
        rcgen::CertificateParams::new(vec![party.to_string(), "localhost".to_string()])
            .map_err(|e| Error::Internal(e.to_string()))?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(std::net::IpAddr::from([
            127, 0, 0, 1,
        ])));
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("jingteng node {party}"));
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let cert_path = dir.join("tls/cert.pem");
    fs::write(&cert_path, cert.pem()).map_err(|e| file_err(&cert_path, e))?;
    write_secret(
        &dir.join("secrets/tls.key.pem"),
        Zeroizing::new(key_pair.serialize_pem()).as_bytes(),
    )?;
    let cert_sha256 = hex(&Sha256::digest(cert.der()));

    let config = NodeConfig {
        party: party.to_string(),
        listen: "127.0.0.1:7443".into(),
        public_key: public_key.clone(),
        catalog: "catalog.sqlite".into(),
        tables: "tables".into(),
        tls_cert: "tls/cert.pem".into(),
        tls_key: "secrets/tls.key.pem".into(),
        signing_key: "secrets/signing.key".into(),
        dashboard: None,
    };
    // The dashboard's tokens exist from the start, whether or not it is turned on.
    dashboard::ensure_tokens(dir)?;
    let text = config_text(&config)?;
    let cfg_path = dir.join("node.toml");
    fs::write(&cfg_path, text).map_err(|e| file_err(&cfg_path, e))?;

    let mut catalog = Catalog::open(&dir.join("catalog.sqlite"))?;
    catalog.set_meta("party", party)?;
    catalog.audit(
        party,
        "init",
        party,
        &serde_json::json!({"public_key": public_key, "cert_sha256": cert_sha256}),
    )?;
    Ok((config, cert_sha256))
}

/// The text of `node.toml` for `config`.
fn config_text(config: &NodeConfig) -> Result<String> {
    Ok(format!(
        "# Jingteng node configuration. No secrets here: keys live in secrets/ (mode 0600).\n{}",
        toml::to_string(config).map_err(|e| Error::Internal(e.to_string()))?
    ))
}

/// An initialised node's directory.
#[derive(Debug)]
pub struct NodeDir {
    dir: PathBuf,
    config: NodeConfig,
}

impl NodeDir {
    /// Opens a data directory made by [`init`].
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("node.toml");
        let text = fs::read_to_string(&path).map_err(|e| Error::File {
            path: path.clone(),
            message: format!("{e} (is this a node directory made by `jingteng init`?)"),
        })?;
        let config: NodeConfig = toml::from_str(&text).map_err(|e| file_err(&path, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Changes the address the node listens on (and that its card advertises), rewriting
    /// `node.toml`. Do it before the node's card goes into a contract: members pin the
    /// endpoint they signed.
    pub fn set_listen(&mut self, listen: &str) -> Result<()> {
        let mut config = self.config.clone();
        config.listen = listen.to_string();
        self.write_config(config)
    }

    /// Sets (or, with `None`, removes) the web dashboard's address, rewriting
    /// `node.toml`. Only a loopback address is accepted.
    pub fn set_dashboard(&mut self, addr: Option<&str>) -> Result<()> {
        let mut config = self.config.clone();
        config.dashboard = addr.map(str::to_string);
        dashboard::dashboard_addr_of(&self.dir, &config)?;
        self.write_config(config)
    }

    /// Rewrites `node.toml` with `config` (beside it, then renamed over it).
    fn write_config(&mut self, config: NodeConfig) -> Result<()> {
        let path = self.dir.join("node.toml");
        let text = config_text(&config)?;
        let tmp = self.dir.join("node.toml.partial");
        fs::write(&tmp, text).map_err(|e| file_err(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| file_err(&path, e))?;
        self.config = config;
        Ok(())
    }

    /// Opens the catalog.
    pub fn catalog(&self) -> Result<Catalog> {
        Ok(Catalog::open(&self.dir.join(&self.config.catalog))?)
    }

    /// The node's signing key: from `JINGTENG_SIGNING_KEY` (hex) if set, else from its
    /// secret file; checked against the public key in `node.toml`.
    pub fn signing_key(&self) -> Result<SigningKey> {
        let path = self.dir.join(&self.config.signing_key);
        let text = match std::env::var("JINGTENG_SIGNING_KEY") {
            Ok(v) => Zeroizing::new(v.into_bytes()),
            Err(_) => read_secret(&path)?,
        };
        let text = std::str::from_utf8(&text).map_err(|_| file_err(&path, "not a hex key"))?;
        let seed = Zeroizing::new(
            decode_hex::<32>(text).ok_or_else(|| file_err(&path, "not a 32-byte hex key"))?,
        );
        let key = SigningKey::from_bytes(&seed);
        if hex(key.verifying_key().as_bytes()) != self.config.public_key {
            return Err(file_err(
                &path,
                "this signing key does not match the public_key in node.toml",
            ));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files_for_the_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("runs/0123456789abcdef");
        private_dir(&dir).unwrap();
        let path = dir.join("report.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second, longer");
        // Only the file itself: no temporary file is left beside it.
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["report.json"]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!((mode(&path), mode(&dir)), (0o600, 0o700));
        }
        // A file that cannot be written leaves nothing behind either.
        assert!(write_atomic(&tmp.path().join("missing/x"), b"x").is_err());
    }
}
