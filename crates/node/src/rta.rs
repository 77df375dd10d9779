//! RTA from networked deliveries: the media (activation) node turns each delivered
//! version into **device tokens** and sends them to the audience's owner (the member
//! that defined it), which answers the media platform's real-time bid requests from
//! them without learning who the users are.
//!
//! - The media node's RTA key: `secrets/rta.key` (hex of 32 random bytes, mode 0600),
//!   made on first need, never logged. A device's token is
//!   `HMAC-SHA256(key, md5)[..16]` ([`jingteng_audience::rta::RtaKey`]), `md5` the MD5
//!   of its canonical device id; the media platform's ad server computes the same and
//!   sends it as the RTA query's `device_md5`.
//! - The media node → owner message ([`TokenList`],
//!   `application/vnd.jingteng.rta-tokens.v1`) at
//!   `POST /v1/collaborations/{id}/rta/{audience}`: a full list (a version's tokens) or
//!   a suppression (a user forgotten at the media node). Its decoder takes any bytes
//!   and answers a typed [`TokenListError`], never a panic.
//! - The owner keeps the latest list per (collaboration, audience) and the suppressions
//!   still in force, under `DIR/audiences/<digest>/rta/received/`, and (with
//!   `jingteng serve --rta-listen`) serves them from a [`LiveIndex`]: one campaign per
//!   audience name, one tier, multiplier 1.
//!
//! On disk:
//!
//! ```text
//! MEDIA/secrets/rta.key                                the media node's RTA key
//! MEDIA/audiences/<digest>/rta/sent/<name>.json        owner, version, tokens, pushed
//! OWNER/audiences/<digest>/rta/received/<name>.tokens  the latest list, as received
//! OWNER/audiences/<digest>/rta/received/<name>.suppressed  suppressions in force
//! OWNER/audiences/<digest>/rta/received/<name>.json    version, tokens, from, when
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use jingteng_audience::rta::{CampaignList, DeviceMd5, LiveIndex, RTA_KEY_LEN, RtaIndex, RtaKey};
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::audiences::{audiences_dir, take, u32_at};
use crate::contract::ContractBody;
use crate::remote::{Problem, internal};
use crate::{Error, NodeDir, Result, file_err, write_atomic};

/// Media type of the media node's token message to an audience's owner.
pub const RTA_TOKENS_TYPE: &str = "application/vnd.jingteng.rta-tokens.v1";

/// The first bytes of a token message.
const MAGIC: &[u8; 4] = b"JTRT";
/// Its wire version.
const WIRE_VERSION: u8 = 1;
/// Largest JSON header.
const MAX_HEADER: usize = 4 << 10;
/// Most tokens one message carries (16 Mi users; 256 MiB of tokens).
pub const MAX_RTA_TOKENS: usize = 1 << 24;
/// Largest token message.
pub(crate) const MAX_RTA_TOKENS_BYTES: usize = 4 + 1 + 4 + MAX_HEADER + 4 + 16 * MAX_RTA_TOKENS;

/// How the media node retries a push to an owner: a few quick tries (the host waits for
/// the delivery meanwhile); a push that still fails is reported and the next delivery
/// sends the full list again.
const PUSH_RETRY: crate::RetryPolicy = crate::RetryPolicy {
    attempts: 3,
    first_delay: Duration::from_millis(300),
    max_delay: Duration::from_secs(2),
};

// ---------------------------------------------------------------------------------
// The wire format.

/// What a token message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// The full list of a delivered version: it replaces the owner's previous one.
    List,
    /// Users forgotten at the media node: suppressed at once, and in later builds
    /// while a list still holds them.
    Suppress,
}

/// What a token message says besides its tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenHeader {
    /// The collaboration.
    pub collaboration: String,
    /// The audience (the campaign id at the owner's RTA endpoint).
    pub audience: String,
    /// The delivered version the list is of (for a suppression: the latest version
    /// the media node holds).
    pub version: u32,
    /// A list or a suppression.
    pub kind: TokenKind,
}

/// The media node's message to an audience's owner: device tokens, strictly
/// increasing (sorted, no duplicates).
///
/// Wire format, version 1: `"JTRT"`, the byte `1`, the header's length (u32,
/// big-endian, at most 4 KiB), the header as JSON, the number of tokens (u32,
/// big-endian, at most 2^24), then each token (16 bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenList {
    /// The header.
    pub header: TokenHeader,
    /// The tokens, strictly increasing.
    pub tokens: Vec<[u8; 16]>,
}

/// What is wrong with a token message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenListError {
    /// It ends before what it announces.
    #[error("truncated: {0}")]
    Truncated(&'static str),
    /// Not a token message of a version this node reads.
    #[error("not a jingteng rta-tokens v1 message")]
    BadMagic,
    /// A length over its bound.
    #[error("{what} is {got}, more than the {max} allowed")]
    TooLarge {
        /// What.
        what: &'static str,
        /// Its value.
        got: usize,
        /// The bound.
        max: usize,
    },
    /// The header is not the JSON expected.
    #[error("header: {0}")]
    Header(String),
    /// Tokens out of order or repeated.
    #[error(
        "the token at position {at} does not follow the one before: tokens must be strictly increasing"
    )]
    Unordered {
        /// Position.
        at: usize,
    },
    /// Bytes after the last token.
    #[error("{0} bytes after the last token")]
    Trailing(usize),
}

impl TokenList {
    /// The message's bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let header =
            serde_json::to_vec(&self.header).map_err(|e| Error::Internal(e.to_string()))?;
        if header.len() > MAX_HEADER || self.tokens.len() > MAX_RTA_TOKENS {
            return Err(Error::Internal(format!(
                "a token message of {} header bytes and {} tokens is over the bounds",
                header.len(),
                self.tokens.len()
            )));
        }
        let mut out = Vec::with_capacity(13 + header.len() + 16 * self.tokens.len());
        out.extend_from_slice(MAGIC);
        out.push(WIRE_VERSION);
        out.extend_from_slice(&(header.len() as u32).to_be_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&(self.tokens.len() as u32).to_be_bytes());
        for t in &self.tokens {
            out.extend_from_slice(t);
        }
        Ok(out)
    }

    /// Reads a message; anything malformed is a [`TokenListError`].
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, TokenListError> {
        let mut rest = bytes;
        let magic = take(&mut rest, 5, "the magic")?;
        if &magic[..4] != MAGIC || magic[4] != WIRE_VERSION {
            return Err(TokenListError::BadMagic);
        }
        let hlen = u32_at(&mut rest, "the header length")? as usize;
        if hlen > MAX_HEADER {
            return Err(TokenListError::TooLarge {
                what: "the header",
                got: hlen,
                max: MAX_HEADER,
            });
        }
        let header: TokenHeader = serde_json::from_slice(take(&mut rest, hlen, "the header")?)
            .map_err(|e| TokenListError::Header(e.to_string()))?;
        let n = u32_at(&mut rest, "the token count")? as usize;
        if n > MAX_RTA_TOKENS {
            return Err(TokenListError::TooLarge {
                what: "the token count",
                got: n,
                max: MAX_RTA_TOKENS,
            });
        }
        let body = take(&mut rest, 16 * n, "the tokens")?;
        if !rest.is_empty() {
            return Err(TokenListError::Trailing(rest.len()));
        }
        let mut tokens: Vec<[u8; 16]> = Vec::with_capacity(n);
        for (at, chunk) in body.chunks_exact(16).enumerate() {
            let mut t = [0u8; 16];
            t.copy_from_slice(chunk);
            if let Some(prev) = tokens.last()
                && t <= *prev
            {
                return Err(TokenListError::Unordered { at });
            }
            tokens.push(t);
        }
        Ok(Self { header, tokens })
    }
}

impl From<crate::audiences::Truncated> for TokenListError {
    fn from(t: crate::audiences::Truncated) -> Self {
        TokenListError::Truncated(t.0)
    }
}

// ---------------------------------------------------------------------------------
// The media node's side.

/// The media node's RTA key: `secrets/rta.key` (hex of 32 random bytes, mode 0600),
/// made on first need.
pub fn rta_key(node: &NodeDir) -> Result<RtaKey> {
    let secrets = node
        .dir()
        .join(&node.config().signing_key)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| node.dir().join("secrets"));
    let path = secrets.join("rta.key");
    if !path.exists() {
        let mut fresh = Zeroizing::new([0u8; RTA_KEY_LEN]);
        rand::rngs::OsRng
            .try_fill_bytes(fresh.as_mut())
            .map_err(|e| Error::Internal(format!("the operating system's RNG failed: {e}")))?;
        crate::private_dir(&secrets)?;
        let text = Zeroizing::new(crate::hex(fresh.as_ref()));
        // Made once: a second writer (a race) loses and reads the first one's key.
        match crate::write_secret(&path, text.as_bytes()) {
            Ok(()) => {}
            Err(_) if path.exists() => {}
            Err(e) => return Err(e),
        }
    }
    let text = crate::read_secret(&path)?;
    let text = std::str::from_utf8(&text).map_err(|_| file_err(&path, "not a hex key"))?;
    let bytes = Zeroizing::new(
        crate::decode_hex::<RTA_KEY_LEN>(text)
            .ok_or_else(|| file_err(&path, "not a 32-byte hex key"))?,
    );
    Ok(RtaKey::from_bytes(*bytes))
}

/// The token of a device as this (media) node's ad server must send it: from the
/// device's MD5 (see [`DeviceMd5::of_device`] for a raw id).
pub fn rta_token(node: &NodeDir, device: DeviceMd5) -> Result<DeviceMd5> {
    Ok(rta_key(node)?.token(device))
}

/// What the media node did about the owner's token list after a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtaPush {
    /// The audience's owner (the member that defined it).
    pub owner: String,
    /// Whether the owner stored the list (or the suppression).
    pub pushed: bool,
    /// Why not, when not; what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What the media node keeps about the last token list of an audience.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sent {
    owner: String,
    version: u32,
    tokens: u64,
    pushed: bool,
    #[serde(default)]
    error: Option<String>,
    at_ms: i64,
}

fn rta_dir(dir: &Path, collaboration: &str) -> PathBuf {
    audiences_dir(dir, collaboration).join("rta")
}

fn sent_path(dir: &Path, collaboration: &str, audience: &str) -> PathBuf {
    rta_dir(dir, collaboration)
        .join("sent")
        .join(format!("{audience}.json"))
}

/// Tokens of the users `ids` (this node's record ids) that have a device id in its
/// identity table `identity` (its latest import), sorted and without duplicates.
pub(crate) fn tokens_of(
    node: &NodeDir,
    collab: &jingteng_psi::Collaboration,
    identity: &Path,
    ids: &[String],
) -> std::result::Result<Vec<[u8; 16]>, String> {
    let md5_of = jingteng_audience::device_md5s(collab, &node.config().party, identity)
        .map_err(|e| e.to_string())?;
    let key = rta_key(node).map_err(|e| e.to_string())?;
    let mut tokens: Vec<[u8; 16]> = ids
        .iter()
        .filter_map(|id| md5_of.get(id))
        .map(|m| key.token(*m).to_bytes())
        .collect();
    tokens.sort_unstable();
    tokens.dedup();
    Ok(tokens)
}

/// Sends `msg` to `owner` (or stores it here if this node is the owner) and records the
/// outcome: in `rta/sent/` for a list, and as an audit entry (counts and names only).
pub(crate) async fn push(
    node: &NodeDir,
    body: &ContractBody,
    owner: &str,
    msg: &TokenList,
    live: Option<&LiveIndex>,
    halt: &crate::retry::Halt,
) -> RtaPush {
    let me = node.config().party.clone();
    let h = &msg.header;
    let outcome: std::result::Result<(), String> = if owner == me {
        // This node defined the audience and is its activation party.
        receive_checked(node.dir(), msg, &me, live)
            .map(|_| ())
            .map_err(|(_, _, detail)| detail)
    } else {
        match body.members.iter().find(|m| m.party == owner) {
            None => Err(format!("the owner {owner} is not a member of the contract")),
            Some(card) => match msg.encode() {
                Err(e) => Err(e.to_string()),
                Ok(bytes) => {
                    let path = format!("/v1/collaborations/{}/rta/{}", h.collaboration, h.audience);
                    let call = crate::retry::Call {
                        method: hyper::Method::POST,
                        path: &path,
                        body: Some((RTA_TOKENS_TYPE, bytes.into())),
                    };
                    match crate::retry::call_peer(node, card, &call, PUSH_RETRY, halt, &|_| {})
                        .await
                    {
                        Ok((200, _)) => Ok(()),
                        Ok((status, answer)) => Err(format!(
                            "{owner} refused the token list ({status}): {}",
                            crate::retry::problem_detail(&answer)
                        )),
                        Err(e) => Err(e.to_string()),
                    }
                }
            },
        }
    };
    let pushed = outcome.is_ok();
    let detail = outcome.err().map(|e| {
        format!(
            "{e}; the owner's RTA index does not have this {}: the next delivery sends the full list again",
            match h.kind {
                TokenKind::List => "version",
                TokenKind::Suppress => "suppression until then",
            }
        )
    });
    if h.kind == TokenKind::List {
        let sent = Sent {
            owner: owner.to_string(),
            version: h.version,
            tokens: msg.tokens.len() as u64,
            pushed,
            error: detail.clone(),
            at_ms: crate::audiences::now_ms(),
        };
        let path = sent_path(node.dir(), &h.collaboration, &h.audience);
        if let (Ok(json), Some(parent)) = (serde_json::to_vec_pretty(&sent), path.parent()) {
            let _ = crate::private_dir(parent).and_then(|()| write_atomic(&path, &json));
        }
    }
    let action = match h.kind {
        TokenKind::List => "rta-tokens-send",
        TokenKind::Suppress => "rta-suppress-send",
    };
    let _ = crate::audiences::audit(
        node.dir(),
        &me,
        action,
        &h.collaboration,
        serde_json::json!({
            "audience": h.audience,
            "version": h.version,
            "tokens": msg.tokens.len(),
            "to": owner,
            "pushed": pushed,
        }),
    );
    RtaPush {
        owner: owner.to_string(),
        pushed,
        detail,
    }
}

/// At the media node, after a forget of one of its own records: sends the record's
/// token (if it has a device id) as a suppression to the owner of every audience
/// delivered to this node in `collaboration`. Returns one outcome per owner asked.
pub async fn forget_at_owners(
    node: &NodeDir,
    collaboration: &str,
    record_id: &str,
) -> Result<Vec<RtaPush>> {
    let body = crate::server::active_contract(node, collaboration)?;
    let collab = jingteng_psi::Collaboration::parse(&body.spec)
        .map_err(|e| Error::Contract(e.to_string()))?;
    let me = node.config().party.clone();
    let sent_dir = rta_dir(node.dir(), collaboration).join("sent");
    let mut audiences: Vec<(String, Sent)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&sent_dir) {
        for e in entries.flatten() {
            let p = e.path();
            let Some(name) = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            let text = std::fs::read(&p).map_err(|e| file_err(&p, e))?;
            let sent: Sent = serde_json::from_slice(&text).map_err(|e| file_err(&p, e))?;
            audiences.push((name.to_string(), sent));
        }
    }
    audiences.sort_by(|a, b| a.0.cmp(&b.0));
    if audiences.is_empty() {
        return Ok(Vec::new());
    }
    let party = collab
        .parties()
        .iter()
        .find(|p| p.name == me)
        .ok_or_else(|| Error::Contract(format!("{me} contributes no data to {collaboration}")))?;
    let identity = crate::share::latest_import(node, &party.identity.name)?;
    let tokens = tokens_of(node, &collab, &identity, &[record_id.trim().to_string()])
        .map_err(Error::Internal)?;
    if tokens.is_empty() {
        // No device id: nothing to suppress in any RTA index.
        return Ok(Vec::new());
    }
    let halt = crate::retry::Halt::default();
    let mut out = Vec::new();
    for (audience, sent) in audiences {
        let msg = TokenList {
            header: TokenHeader {
                collaboration: collaboration.to_string(),
                audience,
                version: sent.version,
                kind: TokenKind::Suppress,
            },
            tokens: tokens.clone(),
        };
        out.push(push(node, &body, &sent.owner, &msg, None, &halt).await);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------
// The owner's side.

/// What the owner keeps about the latest list of an audience.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceivedMeta {
    from: String,
    version: u32,
    tokens: u64,
    received_ms: i64,
}

/// A token list an owner node holds for one of its audiences (no tokens, counts only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtaHeld {
    /// The audience: the campaign id its RTA endpoint answers for.
    pub audience: String,
    /// The activation party that sent it.
    pub from: String,
    /// The delivered version it is of.
    pub version: u32,
    /// Tokens in the list.
    pub tokens: u64,
    /// Of those, suppressed since (users forgotten at the media node).
    pub suppressed: u64,
    /// When it arrived, Unix ms.
    pub received_ms: i64,
}

/// What the owner answers the media node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TokensStored {
    pub(crate) version: u32,
    pub(crate) tokens: u64,
}

fn received_dir(dir: &Path, collaboration: &str) -> PathBuf {
    rta_dir(dir, collaboration).join("received")
}

fn read_list(path: &Path) -> std::result::Result<Option<TokenList>, String> {
    match std::fs::read(path) {
        Ok(b) => TokenList::decode(&b)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Checks that `sender` is the activation party of `audience` and this node its owner:
/// from its own store if it hosts the collaboration, else by asking the host.
pub(crate) async fn check_sender(
    node: &NodeDir,
    body: &ContractBody,
    audience: &str,
    sender: &str,
) -> std::result::Result<(), Problem> {
    let me = node.config().party.clone();
    let host = jingteng_psi::Collaboration::parse(&body.spec)
        .ok()
        .and_then(|c| c.host().map(str::to_string));
    let (owner, activate) = if host.as_deref() == Some(me.as_str()) {
        let d = crate::audiences::show(node.dir(), body, audience)?;
        (d.owner, d.definition.activate)
    } else {
        match crate::audiences::audience_show(node, &body.collaboration, audience).await {
            Ok(d) => (d.owner, d.definition.activate),
            Err(Error::Remote { status: 404, .. }) => {
                return Err((
                    StatusCode::NOT_FOUND,
                    "unknown-audience",
                    format!("the host has no audience {audience:?}"),
                ));
            }
            Err(e) => {
                return Err((
                    StatusCode::BAD_GATEWAY,
                    "host-unreachable",
                    format!("asking the host who defined {audience:?}: {e}"),
                ));
            }
        }
    };
    if owner != me {
        return Err((
            StatusCode::FORBIDDEN,
            "not-the-owner",
            format!("audience {audience:?} was defined by {owner}, not by this node"),
        ));
    }
    if activate != sender {
        return Err((
            StatusCode::FORBIDDEN,
            "not-the-activation-party",
            format!("only {activate}, the audience's activation party, sends its tokens"),
        ));
    }
    Ok(())
}

/// Stores a checked message at the owner (serialised by the caller): a list replaces
/// the previous one (an older version is refused) and keeps only the suppressions it
/// still holds; a suppression is added and applied to `live` at once. A new list
/// rebuilds `live` completely.
pub(crate) fn receive_checked(
    dir: &Path,
    msg: &TokenList,
    from: &str,
    live: Option<&LiveIndex>,
) -> std::result::Result<TokensStored, Problem> {
    let h = &msg.header;
    let root = received_dir(dir, &h.collaboration);
    let list_path = root.join(format!("{}.tokens", h.audience));
    let supp_path = root.join(format!("{}.suppressed", h.audience));
    let meta_path = root.join(format!("{}.json", h.audience));
    crate::private_dir(&root).map_err(|e| internal(&e))?;
    let current = read_list(&list_path).map_err(|e| internal(&e))?;
    let suppressed = read_list(&supp_path).map_err(|e| internal(&e))?;
    let mut supp: BTreeSet<[u8; 16]> = suppressed
        .map(|s| s.tokens)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let action = match h.kind {
        TokenKind::List => {
            if let Some(c) = &current
                && c.header.version > h.version
            {
                return Err((
                    StatusCode::CONFLICT,
                    "stale-tokens",
                    format!(
                        "this node holds version {} of {:?}; version {} is older",
                        c.header.version, h.audience, h.version
                    ),
                ));
            }
            // Suppressions stay in force while a list still holds them.
            let listed: BTreeSet<&[u8; 16]> = msg.tokens.iter().collect();
            supp.retain(|t| listed.contains(t));
            write_atomic(&list_path, &msg.encode().map_err(|e| internal(&e))?)
                .map_err(|e| internal(&e))?;
            let meta = ReceivedMeta {
                from: from.to_string(),
                version: h.version,
                tokens: msg.tokens.len() as u64,
                received_ms: crate::audiences::now_ms(),
            };
            write_atomic(
                &meta_path,
                &serde_json::to_vec_pretty(&meta).map_err(|e| internal(&e))?,
            )
            .map_err(|e| internal(&e))?;
            "rta-tokens-receive"
        }
        TokenKind::Suppress => {
            supp.extend(msg.tokens.iter().copied());
            "rta-suppress-receive"
        }
    };
    let supp_msg = TokenList {
        header: TokenHeader {
            kind: TokenKind::Suppress,
            ..h.clone()
        },
        tokens: supp.into_iter().collect(),
    };
    write_atomic(&supp_path, &supp_msg.encode().map_err(|e| internal(&e))?)
        .map_err(|e| internal(&e))?;
    if let Some(live) = live {
        match h.kind {
            TokenKind::Suppress => {
                let devices: Vec<DeviceMd5> = msg
                    .tokens
                    .iter()
                    .map(|t| DeviceMd5::from_bytes(*t))
                    .collect();
                live.forget(&devices);
            }
            TokenKind::List => {
                let (index, _) = build_index(dir).map_err(|e| internal(&e))?;
                live.replace(index);
            }
        }
    }
    let me = NodeDir::open(dir)
        .map(|n| n.config().party.clone())
        .unwrap_or_default();
    crate::audiences::audit(
        dir,
        &me,
        action,
        &h.collaboration,
        serde_json::json!({
            "audience": h.audience,
            "version": h.version,
            "tokens": msg.tokens.len(),
            "from": from,
        }),
    )?;
    Ok(TokensStored {
        version: h.version,
        tokens: msg.tokens.len() as u64,
    })
}

/// The RTA index of every token list this node holds (all collaborations): one
/// campaign per audience name (lists of audiences of the same name in several
/// collaborations are tiers of one campaign), one tier, multiplier 1, suppressions
/// left out. Also what it holds, per collaboration digest.
pub fn build_index(dir: &Path) -> Result<(RtaIndex, Vec<RtaHeld>)> {
    let mut campaigns: BTreeMap<String, CampaignList> = BTreeMap::new();
    let mut held = Vec::new();
    let root = dir.join("audiences");
    let collabs = match std::fs::read_dir(&root) {
        Ok(e) => e.flatten().map(|e| e.path()).collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(file_err(&root, e)),
    };
    for c in collabs {
        let received = c.join("rta").join("received");
        held.extend(held_in(&received, &mut campaigns)?);
    }
    let index = RtaIndex::build(campaigns.into_values().collect(), &[])
        .map_err(|e| Error::Internal(format!("building the RTA index: {e}")))?;
    Ok((index, held))
}

fn held_in(
    received: &Path,
    campaigns: &mut BTreeMap<String, CampaignList>,
) -> Result<Vec<RtaHeld>> {
    let mut held = Vec::new();
    let mut names: Vec<String> = match std::fs::read_dir(received) {
        Ok(e) => e
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".tokens"))
                    .map(str::to_string)
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(held),
        Err(e) => return Err(file_err(received, e)),
    };
    names.sort();
    for name in names {
        let list = read_list(&received.join(format!("{name}.tokens")))
            .map_err(Error::Internal)?
            .ok_or_else(|| Error::Internal(format!("{name}.tokens vanished")))?;
        let supp: BTreeSet<[u8; 16]> = read_list(&received.join(format!("{name}.suppressed")))
            .map_err(Error::Internal)?
            .map(|s| s.tokens.into_iter().collect())
            .unwrap_or_default();
        let meta_path = received.join(format!("{name}.json"));
        let meta: Option<ReceivedMeta> = std::fs::read(&meta_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let members: Vec<DeviceMd5> = list
            .tokens
            .iter()
            .filter(|t| !supp.contains(*t))
            .map(|t| DeviceMd5::from_bytes(*t))
            .collect();
        held.push(RtaHeld {
            audience: name.clone(),
            from: meta.as_ref().map(|m| m.from.clone()).unwrap_or_default(),
            version: list.header.version,
            tokens: list.tokens.len() as u64,
            suppressed: (list.tokens.len() - members.len()) as u64,
            received_ms: meta.map_or(0, |m| m.received_ms),
        });
        let entry = campaigns
            .entry(name.clone())
            .or_insert_with(|| CampaignList::new(name.clone()));
        entry.tiers.push(jingteng_audience::rta::Tier {
            multiplier: 1.0,
            members,
        });
    }
    Ok(held)
}

/// The token lists this (owner) node holds for `collaboration`'s audiences.
pub fn rta_held(node: &NodeDir, collaboration: &str) -> Result<Vec<RtaHeld>> {
    let mut scratch = BTreeMap::new();
    held_in(&received_dir(node.dir(), collaboration), &mut scratch)
}

/// A [`LiveIndex`] of every token list this node holds, for `jingteng serve
/// --rta-listen`.
pub fn rta_live_index(node: &NodeDir) -> Result<Arc<LiveIndex>> {
    let (index, _) = build_index(node.dir())?;
    Ok(Arc::new(LiveIndex::new(index)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> TokenList {
        TokenList {
            header: TokenHeader {
                collaboration: "c".into(),
                audience: "a".into(),
                version: 2,
                kind: TokenKind::List,
            },
            tokens: vec![[1; 16], [2; 16], [9; 16]],
        }
    }

    #[test]
    fn the_wire_format_is_pinned() {
        let bytes = sample().encode().unwrap();
        let header = br#"{"collaboration":"c","audience":"a","version":2,"kind":"list"}"#;
        let mut want = b"JTRT\x01".to_vec();
        want.extend_from_slice(&(header.len() as u32).to_be_bytes());
        want.extend_from_slice(header);
        want.extend_from_slice(&[0, 0, 0, 3]);
        for b in [1u8, 2, 9] {
            want.extend_from_slice(&[b; 16]);
        }
        assert_eq!(bytes, want);
        assert_eq!(TokenList::decode(&bytes).unwrap(), sample());
        let mut s = sample();
        s.header.kind = TokenKind::Suppress;
        s.tokens.clear();
        assert_eq!(TokenList::decode(&s.encode().unwrap()).unwrap(), s);
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        let good = sample().encode().unwrap();
        for n in 0..good.len() {
            assert!(
                matches!(
                    TokenList::decode(&good[..n]),
                    Err(TokenListError::Truncated(_) | TokenListError::Header(_))
                ),
                "prefix {n}"
            );
        }
        let mut extra = good.clone();
        extra.push(0);
        assert_eq!(TokenList::decode(&extra), Err(TokenListError::Trailing(1)));
        let mut bad = good.clone();
        bad[4] = 2;
        assert_eq!(TokenList::decode(&bad), Err(TokenListError::BadMagic));
        for tokens in [vec![[3; 16], [3; 16]], vec![[3; 16], [1; 16]]] {
            let mut s = sample();
            s.tokens = tokens;
            assert_eq!(
                TokenList::decode(&s.encode().unwrap()),
                Err(TokenListError::Unordered { at: 1 })
            );
        }
        // Huge announced lengths are refused before any allocation.
        let mut huge = b"JTRT\x01".to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            TokenList::decode(&huge),
            Err(TokenListError::TooLarge {
                what: "the header",
                ..
            })
        ));
        let mut many = good[..good.len() - 52].to_vec();
        many.extend_from_slice(&(MAX_RTA_TOKENS as u32 + 1).to_be_bytes());
        assert!(matches!(
            TokenList::decode(&many),
            Err(TokenListError::TooLarge {
                what: "the token count",
                ..
            })
        ));
        let mut unknown = b"JTRT\x01".to_vec();
        let h = br#"{"collaboration":"c","audience":"a","version":1,"kind":"list","x":1}"#;
        unknown.extend_from_slice(&(h.len() as u32).to_be_bytes());
        unknown.extend_from_slice(h);
        unknown.extend_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(
            TokenList::decode(&unknown),
            Err(TokenListError::Header(_))
        ));
        // Over the bound, encoding refuses too.
        let mut over = sample();
        over.tokens = vec![[0; 16]; MAX_RTA_TOKENS + 1];
        assert!(over.encode().is_err());
    }

    /// Random corruptions of a valid message (a cheap stand-in for the fuzz target in
    /// `fuzz/fuzz_targets/rta_tokens.rs`): never a panic, and whatever decodes keeps the
    /// invariants and round-trips.
    #[test]
    fn corrupted_messages_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        let good = sample().encode().unwrap();
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..rng.random_range(1..4) {
                match rng.random_range(0..3) {
                    0 => {
                        let i = rng.random_range(0..b.len());
                        b[i] = rng.random();
                    }
                    1 => b.truncate(rng.random_range(0..b.len())),
                    _ => b.push(rng.random()),
                }
                if b.is_empty() {
                    break;
                }
            }
            if let Ok(list) = TokenList::decode(&b) {
                assert!(list.tokens.windows(2).all(|w| w[0] < w[1]));
                assert_eq!(TokenList::decode(&list.encode().unwrap()).unwrap(), list);
            }
        }
    }
}
