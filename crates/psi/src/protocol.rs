//! The ECDH-PSI exchange, sans I/O.
//!
//! For one channel, every participating party's column travels a chain: its owner
//! hashes each value to the group, blinds it with its key and shuffles the batch; every
//! other participant multiplies each point by its own key; back at the owner, the fully
//! blinded points (equal for equal values, whoever owns them) become 16-byte join keys,
//! restored to the owner's row order. Nobody but the owner sees the owner's values, and
//! the shuffle keeps peers from learning which row a point belongs to.
//!
//! Messages are [`BlindedBatch`]es with a pinned wire format ([`BlindedBatch::encode`]).

use curve25519_dalek::ristretto::RistrettoPoint;
use rand::seq::SliceRandom;

use crate::group::{self, Channel, SecretKey};
use crate::normalize::DigestBytes;
use crate::{Error, Result};

/// Most points one batch may carry (32 MiB of points): bounds what a peer can make us
/// allocate.
pub const MAX_BATCH: usize = 1 << 20;
const MAGIC: &[u8; 4] = b"JTB1";

/// A batch of blinded points as it travels between parties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlindedBatch {
    points: Vec<[u8; 32]>,
}

impl BlindedBatch {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Wire format: `"JTB1"`, the number of points as a big-endian `u32`, then each
    /// point's 32-byte ristretto255 encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.points.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.points.len() as u32).to_be_bytes());
        for p in &self.points {
            out.extend_from_slice(p);
        }
        out
    }

    /// Parses the wire format. Points are checked when they are used ([`Party::reblind`]),
    /// where an invalid one is an error too.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let header = bytes.get(..8).ok_or(Error::Truncated {
            expected: 8,
            got: bytes.len(),
        })?;
        if &header[..4] != MAGIC {
            return Err(Error::BadMagic);
        }
        let mut n = [0u8; 4];
        n.copy_from_slice(&header[4..8]);
        let count = u32::from_be_bytes(n) as usize;
        if count > MAX_BATCH {
            return Err(Error::TooLarge {
                count,
                max: MAX_BATCH,
            });
        }
        let body = &bytes[8..];
        if body.len() != count * 32 {
            return Err(Error::Truncated {
                expected: 8 + count * 32,
                got: bytes.len(),
            });
        }
        let points = body
            .chunks_exact(32)
            .map(|c| {
                let mut p = [0u8; 32];
                p.copy_from_slice(c);
                p
            })
            .collect();
        Ok(Self { points })
    }
}

/// The owner's private state for a batch in flight: how it shuffled its rows.
#[derive(Debug)]
pub struct Pending {
    /// `order[i]` = the owner's row index (within the batch) of the point at position i.
    order: Vec<u32>,
}

/// One party's side of the protocol for one collaboration.
#[derive(Debug)]
pub struct Party {
    /// The key halved (`k / 2`): points blinded with it and encoded with the batch
    /// doubling encoder come out as `k · P`. The key itself is dropped (zeroised).
    half: SecretKey,
}

impl Party {
    /// A party with its secret key for the collaboration.
    pub fn new(key: SecretKey) -> Self {
        Self { half: key.halved() }
    }

    /// Starts a batch of the party's own values: hash to the group, blind, shuffle.
    pub fn blind<R: rand::Rng + ?Sized>(
        &self,
        channel: &Channel,
        digests: &[DigestBytes],
        rng: &mut R,
    ) -> Result<(Pending, BlindedBatch)> {
        check_len(digests.len())?;
        let mut order: Vec<u32> = (0..digests.len() as u32).collect();
        order.shuffle(rng);
        let points: Vec<RistrettoPoint> = order
            .iter()
            .map(|&i| {
                self.half
                    .blind(&channel.hash_to_group(digests[i as usize].as_bytes()))
            })
            .collect();
        Ok((
            Pending { order },
            BlindedBatch {
                points: group::encode_doubled(&points),
            },
        ))
    }

    /// Multiplies every point of another party's batch by this party's key, keeping
    /// the order. An invalid point is an error naming its position.
    pub fn reblind(&self, batch: &BlindedBatch) -> Result<BlindedBatch> {
        check_len(batch.len())?;
        let points = batch
            .points
            .iter()
            .enumerate()
            .map(|(i, b)| {
                group::decode(b)
                    .map(|p| self.half.blind(&p))
                    .map_err(|_| Error::InvalidPointAt { index: i })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(BlindedBatch {
            points: group::encode_doubled(&points),
        })
    }

    /// Finishes a batch that has been through every other party: the join key of each
    /// of the owner's rows, in the owner's row order.
    pub fn finish(&self, pending: Pending, batch: &BlindedBatch) -> Result<Vec<[u8; 16]>> {
        if batch.len() != pending.order.len() {
            return Err(Error::BatchMismatch {
                expected: pending.order.len(),
                got: batch.len(),
            });
        }
        let mut keys = vec![[0u8; 16]; batch.len()];
        for (p, &row) in batch.points.iter().zip(&pending.order) {
            keys[row as usize] = group::join_key(p);
        }
        Ok(keys)
    }
}

fn check_len(n: usize) -> Result<()> {
    if n > MAX_BATCH {
        Err(Error::TooLarge {
            count: n,
            max: MAX_BATCH,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::DigestKind;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn parties(n: usize) -> Vec<Party> {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        (0..n)
            .map(|_| Party::new(SecretKey::random(&mut rng)))
            .collect()
    }

    /// Runs one owner's column through every other party.
    fn run(parties: &[Party], owner: usize, values: &[&str]) -> Vec<[u8; 16]> {
        let channel = Channel::new("collab", "email/sha256");
        let digests: Vec<_> = values
            .iter()
            .map(|v| DigestKind::Sha256.hash(v.as_bytes()))
            .collect();
        let mut rng = ChaCha20Rng::seed_from_u64(owner as u64);
        let (pending, mut batch) = parties[owner].blind(&channel, &digests, &mut rng).unwrap();
        for (i, p) in parties.iter().enumerate() {
            if i != owner {
                // Through the wire format, as between nodes.
                let wire = BlindedBatch::decode(&batch.encode()).unwrap();
                batch = p.reblind(&wire).unwrap();
            }
        }
        parties[owner].finish(pending, &batch).unwrap()
    }

    #[test]
    fn equal_values_get_equal_join_keys_across_three_parties() {
        let ps = parties(3);
        let a = run(&ps, 0, &["x", "y", "z"]);
        let b = run(&ps, 1, &["z", "w", "x"]);
        let c = run(&ps, 2, &["y"]);
        assert_eq!(a[0], b[2]);
        assert_eq!(a[2], b[0]);
        assert_eq!(a[1], c[0]);
        assert_ne!(a[0], a[1]);
        assert!(!b.contains(&a[1]));
    }

    #[test]
    fn wire_format_is_pinned() {
        let batch = BlindedBatch {
            points: vec![[7u8; 32]],
        };
        let mut expected = b"JTB1\x00\x00\x00\x01".to_vec();
        expected.extend_from_slice(&[7u8; 32]);
        assert_eq!(batch.encode(), expected);
        assert_eq!(BlindedBatch::decode(&expected).unwrap(), batch);
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        assert!(matches!(
            BlindedBatch::decode(b"JTB"),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            BlindedBatch::decode(b"XXXX\0\0\0\0"),
            Err(Error::BadMagic)
        ));
        assert!(matches!(
            BlindedBatch::decode(b"JTB1\xff\xff\xff\xff"),
            Err(Error::TooLarge { .. })
        ));
        assert!(matches!(
            BlindedBatch::decode(b"JTB1\0\0\0\x02abc"),
            Err(Error::Truncated { .. })
        ));
        let bad = BlindedBatch {
            points: vec![[0xff; 32]],
        };
        assert!(matches!(
            parties(1)[0].reblind(&bad),
            Err(Error::InvalidPointAt { index: 0 })
        ));
    }
}
