//! The group operations of ECDH-PSI over ristretto255: domain-separated hash-to-group,
//! blinding with a secret scalar, point encoding, join keys.

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest as _, Sha256, Sha512};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{Error, Result};

/// Domain tag of the hash-to-group; a new protocol version gets a new tag.
const DOMAIN: &[u8] = b"jingteng-psi-v1/hash-to-group";

/// A matching channel: one identifier type compared through one digest, within one
/// collaboration. Points of different channels or collaborations never collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel {
    collaboration: String,
    name: String,
}

impl Channel {
    /// A channel named like `phone/md5` or `device:idfa/sha256` in a collaboration.
    pub fn new(collaboration: &str, name: &str) -> Self {
        Self {
            collaboration: collaboration.to_string(),
            name: name.to_string(),
        }
    }

    /// The channel's name (`phone/md5`, …).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `H(collaboration ‖ channel ‖ value)`: SHA-512 over a length-prefixed encoding,
    /// mapped to the group with ristretto255's one-way map (RFC 9496 §4.3.4).
    pub fn hash_to_group(&self, value: &[u8]) -> RistrettoPoint {
        let mut h = Sha512::new();
        for part in [
            DOMAIN,
            self.collaboration.as_bytes(),
            self.name.as_bytes(),
            value,
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        let wide: [u8; 64] = h.finalize().into();
        RistrettoPoint::from_uniform_bytes(&wide)
    }
}

/// A party's secret scalar for one collaboration. Zeroised on drop, never printed,
/// never serialised.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretKey(Scalar);

impl SecretKey {
    /// A fresh key from a cryptographically secure RNG.
    pub fn random<R: rand::CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut wide = [0u8; 64];
        rng.fill_bytes(&mut wide);
        let s = Scalar::from_bytes_mod_order_wide(&wide);
        wide.zeroize();
        Self(s)
    }

    /// A key from 64 uniformly random bytes (reduced modulo the group order), for
    /// callers that draw the randomness themselves. The caller zeroises its copy.
    pub fn from_uniform_bytes(wide: &[u8; 64]) -> Self {
        Self(Scalar::from_bytes_mod_order_wide(wide))
    }

    /// Multiplies a point by this key.
    pub fn blind(&self, p: &RistrettoPoint) -> RistrettoPoint {
        p * self.0
    }

    /// The key halved (`k · 2⁻¹`): blinding with it and then doubling during batch
    /// encoding ([`encode_doubled`]) yields `k · P` with one inversion per batch.
    pub fn halved(&self) -> SecretKey {
        SecretKey(self.0 * Scalar::from(2u8).invert())
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

/// Encodes points as their 32-byte ristretto255 encodings.
pub fn encode(points: &[RistrettoPoint]) -> Vec<[u8; 32]> {
    points.iter().map(|p| p.compress().to_bytes()).collect()
}

/// Encodes `2·P` for every point, sharing one field inversion across the batch.
pub(crate) fn encode_doubled(points: &[RistrettoPoint]) -> Vec<[u8; 32]> {
    RistrettoPoint::double_and_compress_batch(points)
        .into_iter()
        .map(|c| c.to_bytes())
        .collect()
}

/// Decodes a 32-byte encoding. A non-canonical or off-group encoding is an error, and
/// so is the identity, which no honest party ever sends (it would blind to itself).
pub fn decode(bytes: &[u8; 32]) -> Result<RistrettoPoint> {
    match CompressedRistretto(*bytes).decompress() {
        Some(p) if *bytes != [0u8; 32] => Ok(p),
        _ => Err(Error::InvalidPoint),
    }
}

/// A 16-byte join key: the first half of SHA-256 over the fully blinded point's
/// encoding, under its own domain tag.
pub fn join_key(fully_blinded: &[u8; 32]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"jingteng-psi-v1/join-key");
    h.update(fully_blinded);
    let d = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&d[..16]);
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn blinding_commutes() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let (a, b) = (SecretKey::random(&mut rng), SecretKey::random(&mut rng));
        let p = Channel::new("c1", "phone/md5").hash_to_group(b"x");
        assert_eq!(a.blind(&b.blind(&p)), b.blind(&a.blind(&p)));
        assert_eq!(
            encode_doubled(&[a.halved().blind(&p)]),
            encode(&[a.blind(&p)])
        );
    }

    #[test]
    fn channels_and_collaborations_separate_domains() {
        let v = b"13800138000";
        let p = Channel::new("c1", "phone/md5").hash_to_group(v);
        assert_ne!(p, Channel::new("c2", "phone/md5").hash_to_group(v));
        assert_ne!(p, Channel::new("c1", "phone/sha256").hash_to_group(v));
        // Length prefixes: moving a byte between fields changes the point.
        assert_ne!(
            Channel::new("c1", "ab").hash_to_group(b"c"),
            Channel::new("c1", "a").hash_to_group(b"bc")
        );
    }

    #[test]
    fn keys_never_print() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let k = SecretKey::random(&mut rng);
        assert_eq!(format!("{k:?}"), "SecretKey(<redacted>)");
    }

    #[test]
    fn bad_encodings_are_errors() {
        assert!(decode(&[0xff; 32]).is_err());
        assert!(decode(&[0u8; 32]).is_err(), "the identity is refused");
    }
}
