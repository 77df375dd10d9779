//! Collaboration contracts: one member proposes (the spec, every member's identity and
//! endpoint), every member signs, and nothing runs before all have signed. Any change
//! is a new contract and needs fresh signatures.
//!
//! A contract file is JSON: `{"body": "<the contract as a JSON string>", "signatures":
//! {party: hex Ed25519 signature}}`. Signatures cover the exact bytes of `body`, so
//! re-formatting the file cannot change what was signed, and editing the body voids
//! every signature.

use std::collections::BTreeMap;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};
use jingteng_psi::Collaboration;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, NodeDir, Result, decode_hex, file_err, hex};

/// What a member publishes about itself so others can pin it: `jingteng collab card`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MemberCard {
    /// The party.
    pub party: String,
    /// Ed25519 public key (hex) that signs contracts.
    pub public_key: String,
    /// SHA-256 (hex) of the TLS certificate's DER: peers accept only this certificate.
    pub cert_sha256: String,
    /// The certificate itself (PEM), so peers can trust it without a CA.
    pub cert_pem: String,
    /// Where the node's API is reached, `host:port`.
    pub endpoint: String,
}

/// The signed content of a contract.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ContractBody {
    /// The collaboration id (from the spec).
    pub collaboration: String,
    /// The party that proposed it.
    pub proposer: String,
    /// The collaboration spec, verbatim.
    pub spec: String,
    /// Every member, in spec order.
    pub members: Vec<MemberCard>,
}

/// A contract file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    /// The body, as the exact JSON text that was signed.
    pub body: String,
    /// Signatures by party, hex.
    pub signatures: BTreeMap<String, String>,
}

/// Who has signed.
#[derive(Debug, Clone, Serialize)]
pub struct ContractStatus {
    /// The collaboration id.
    pub collaboration: String,
    /// SHA-256 of the body, hex: the contract's identity.
    pub contract_sha256: String,
    /// Members that signed, with valid signatures.
    pub signed: Vec<String>,
    /// Members still to sign.
    pub pending: Vec<String>,
    /// True when every member has signed: only then may anything run.
    pub active: bool,
}

/// This node's card.
pub fn card(node: &NodeDir) -> Result<MemberCard> {
    let cert_path = node.dir().join(&node.config().tls_cert);
    let cert_pem = std::fs::read_to_string(&cert_path).map_err(|e| file_err(&cert_path, e))?;
    Ok(MemberCard {
        party: node.config().party.clone(),
        public_key: node.config().public_key.clone(),
        cert_sha256: crate::tls::pem_cert_sha256(&cert_pem).map_err(|e| file_err(&cert_path, e))?,
        cert_pem,
        endpoint: node.config().listen.clone(),
    })
}

impl Contract {
    /// Reads a contract file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e))?;
        serde_json::from_str(&text).map_err(|e| file_err(path, format!("not a contract: {e}")))
    }

    /// Writes the contract file (atomically: temporary file, then rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        let tmp = path.with_extension("json.partial");
        std::fs::write(&tmp, text + "\n").map_err(|e| file_err(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))
    }

    /// The parsed body.
    pub fn body(&self) -> Result<ContractBody> {
        serde_json::from_str(&self.body)
            .map_err(|e| Error::Contract(format!("unreadable body: {e}")))
    }

    /// SHA-256 of the body, hex.
    pub fn sha256(&self) -> String {
        hex(&Sha256::digest(self.body.as_bytes()))
    }

    /// Checks every signature present; an invalid one, or one by a non-member, is an
    /// error naming the party.
    pub fn status(&self) -> Result<ContractStatus> {
        let body = self.body()?;
        for party in self.signatures.keys() {
            if !body.members.iter().any(|m| &m.party == party) {
                return Err(Error::Contract(format!(
                    "signature by {party:?}, which is not a member"
                )));
            }
        }
        let mut signed = Vec::new();
        let mut pending = Vec::new();
        for m in &body.members {
            match self.signatures.get(&m.party) {
                Some(sig) => {
                    verify(&m.public_key, self.body.as_bytes(), sig)
                        .map_err(|e| Error::Contract(format!("{:?}'s signature: {e}", m.party)))?;
                    signed.push(m.party.clone());
                }
                None => pending.push(m.party.clone()),
            }
        }
        Ok(ContractStatus {
            collaboration: body.collaboration,
            contract_sha256: self.sha256(),
            active: pending.is_empty(),
            signed,
            pending,
        })
    }
}

fn verify(public_key_hex: &str, message: &[u8], signature_hex: &str) -> Result<(), String> {
    let pk =
        decode_hex::<32>(public_key_hex).ok_or("the member's public key is not 32 bytes of hex")?;
    let key = VerifyingKey::from_bytes(&pk).map_err(|e| format!("bad public key: {e}"))?;
    let sig = decode_hex::<64>(signature_hex).ok_or("not 64 bytes of hex")?;
    key.verify(message, &Signature::from_bytes(&sig))
        .map_err(|_| {
            "does not verify: the contract was changed after signing, or the key is wrong"
                .to_string()
        })
}

/// Proposes a contract: this node's card and the other members' cards, for the spec at
/// `spec_path`. The proposer signs it.
pub fn propose(node: &NodeDir, spec_path: &Path, cards: Vec<MemberCard>) -> Result<Contract> {
    let spec = std::fs::read_to_string(spec_path).map_err(|e| file_err(spec_path, e))?;
    let collab = Collaboration::parse(&spec).map_err(|e| file_err(spec_path, e))?;
    let mine = card(node)?;
    let mut by_party: BTreeMap<String, MemberCard> = BTreeMap::new();
    for c in cards.into_iter().chain(std::iter::once(mine.clone())) {
        if let Some(prev) = by_party.insert(c.party.clone(), c.clone())
            && prev != c
        {
            return Err(Error::Contract(format!(
                "two different cards for party {:?}",
                c.party
            )));
        }
    }
    let mut members = Vec::new();
    for p in collab.parties() {
        let c = by_party.remove(&p.name).ok_or_else(|| {
            Error::Contract(format!(
                "no card for party {:?}; get it with `jingteng collab card` on its node",
                p.name
            ))
        })?;
        members.push(c);
    }
    if let Some(extra) = by_party.keys().next() {
        return Err(Error::Contract(format!(
            "card for {extra:?}, which the spec does not list"
        )));
    }
    let body = ContractBody {
        collaboration: collab.id().to_string(),
        proposer: mine.party.clone(),
        spec,
        members,
    };
    let mut contract = Contract {
        body: serde_json::to_string(&body).map_err(|e| Error::Internal(e.to_string()))?,
        signatures: BTreeMap::new(),
    };
    sign(node, &mut contract)?;
    Ok(contract)
}

/// Signs a contract as this node, after checking it: this node must be a member with
/// its own card, and every signature already there must verify. Recorded in the catalog
/// and audited; when the last member signs, the collaboration becomes active here.
pub fn sign(node: &NodeDir, contract: &mut Contract) -> Result<ContractStatus> {
    let body = contract.body()?;
    let mine = card(node)?;
    let me = body
        .members
        .iter()
        .find(|m| m.party == mine.party)
        .ok_or_else(|| Error::Contract(format!("this node ({:?}) is not a member", mine.party)))?;
    if me != &mine {
        return Err(Error::Contract(format!(
            "the contract's card for {:?} is not this node's (different key, certificate or endpoint)",
            mine.party
        )));
    }
    contract.status()?;
    let key = node.signing_key()?;
    let sig = key.sign(contract.body.as_bytes());
    contract
        .signatures
        .insert(mine.party.clone(), hex(&sig.to_bytes()));
    let status = contract.status()?;
    record(node, contract, &status, "sign")?;
    Ok(status)
}

/// Records a contract this node has seen (signed by others, say) in its catalog.
pub fn record(
    node: &NodeDir,
    contract: &Contract,
    status: &ContractStatus,
    action: &str,
) -> Result<()> {
    let mut catalog = node.catalog()?;
    let text = serde_json::to_string(contract).map_err(|e| Error::Internal(e.to_string()))?;
    catalog.put_collaboration(
        &status.collaboration,
        &text,
        if status.active { "active" } else { "proposed" },
    )?;
    catalog.audit(
        &node.config().party,
        action,
        &status.collaboration,
        &serde_json::json!({
            "contract_sha256": status.contract_sha256,
            "signed": status.signed,
            "pending": status.pending,
        }),
    )?;
    Ok(())
}
