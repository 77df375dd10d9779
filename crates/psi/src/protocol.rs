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

const KEEP_MAGIC: &[u8; 4] = b"JTK1";

/// Longest channel name a [`KeepBatch`] carries (`device:idfa/sha256` is 18 bytes).
pub const MAX_CHANNEL_NAME: usize = 255;

/// A batch an owner hands to the party that re-blinds last and keeps the join keys
/// itself (networked mode: the host), instead of having the points returned and sending
/// the join keys back: the points, re-blinded by every other participant of the
/// channel, in the owner's row order, with their rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepBatch {
    /// The channel (`phone/md5`, …).
    pub channel: String,
    /// The first row of the owner's batch: names the batch (a batch sent again replaces
    /// itself), and the rows are coded from it.
    pub start: u32,
    /// The owner's row of each point, ascending (a row with two values appears twice).
    pub rows: Vec<u32>,
    /// The points, one per row.
    pub points: BlindedBatch,
}

impl KeepBatch {
    /// Wire format: `"JTK1"`; the channel name's length (`u8`, 1 to 255) and its UTF-8
    /// bytes; `start` and the number of points (big-endian `u32`s); each row's
    /// difference from the previous one (the first's from `start`) in LEB128
    /// ([`encode_rows`]); then each point's 32-byte encoding. About 33 bytes a point.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let name = self.channel.as_bytes();
        if name.is_empty() || name.len() > MAX_CHANNEL_NAME {
            return Err(Error::Malformed {
                what: format!("a channel name of {} bytes", name.len()),
            });
        }
        if self.rows.len() != self.points.len() {
            return Err(Error::BatchMismatch {
                expected: self.rows.len(),
                got: self.points.len(),
            });
        }
        check_len(self.rows.len())?;
        let mut out = Vec::with_capacity(14 + name.len() + 33 * self.rows.len());
        out.extend_from_slice(KEEP_MAGIC);
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.extend_from_slice(&self.start.to_be_bytes());
        out.extend_from_slice(&(self.rows.len() as u32).to_be_bytes());
        crate::rows::encode_rows(self.start, &self.rows, &mut out)?;
        for p in &self.points.points {
            out.extend_from_slice(p);
        }
        Ok(out)
    }

    /// Parses the wire format; sizes must agree exactly. Points are checked when they
    /// are used ([`Party::join_keys`]).
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let truncated = |expected: usize| Error::Truncated {
            expected,
            got: bytes.len(),
        };
        let magic = bytes.get(..4).ok_or(truncated(5))?;
        if magic != KEEP_MAGIC {
            return Err(Error::BadMagic);
        }
        let n = usize::from(*bytes.get(4).ok_or(truncated(5))?);
        if n == 0 {
            return Err(Error::Malformed {
                what: "an empty channel name".into(),
            });
        }
        let name = bytes.get(5..5 + n).ok_or(truncated(5 + n))?;
        let channel = std::str::from_utf8(name)
            .map_err(|_| Error::Malformed {
                what: "a channel name that is not UTF-8".into(),
            })?
            .to_string();
        let at = 5 + n;
        let head = bytes.get(at..at + 8).ok_or(truncated(at + 8))?;
        let start = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let count = u32::from_be_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if count > MAX_BATCH {
            return Err(Error::TooLarge {
                count,
                max: MAX_BATCH,
            });
        }
        let rest = &bytes[at + 8..];
        // Each point takes 32 bytes and each row at least one: refuse before allocating.
        if rest.len() < count * 33 {
            return Err(truncated(at + 8 + count * 33));
        }
        let (rows, used) = crate::rows::decode_rows(rest, start, count)?;
        let body = &rest[used..];
        if body.len() != count * 32 {
            return Err(Error::Truncated {
                expected: at + 8 + used + count * 32,
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
        Ok(Self {
            channel,
            start,
            rows,
            points: BlindedBatch { points },
        })
    }
}

/// The owner's private state for a batch in flight: how it shuffled its rows.
#[derive(Debug)]
pub struct Pending {
    /// `order[i]` = the owner's row index (within the batch) of the point at position i.
    order: Vec<u32>,
}

impl Pending {
    /// The points of a batch that came back from the other parties, put back in the
    /// owner's row order (undoing the shuffle): what the owner hands the party that
    /// re-blinds last and keeps the join keys ([`Party::join_keys`]), so that it can
    /// send the rows along as small deltas.
    pub fn in_row_order(&self, batch: &BlindedBatch) -> Result<BlindedBatch> {
        if batch.len() != self.order.len() {
            return Err(Error::BatchMismatch {
                expected: self.order.len(),
                got: batch.len(),
            });
        }
        let mut points = vec![[0u8; 32]; batch.len()];
        for (p, &row) in batch.points.iter().zip(&self.order) {
            points[row as usize] = *p;
        }
        Ok(BlindedBatch { points })
    }
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

    /// Re-blinds another party's batch as the last party of its chain and keeps the
    /// result: the join key of every point, in the batch's order. An invalid point is an
    /// error naming its position. (The party that keeps the join keys — the host — learns
    /// nothing it would not learn from the owner's join keys: it holds the last key.)
    pub fn join_keys(&self, batch: &BlindedBatch) -> Result<Vec<[u8; 16]>> {
        Ok(self
            .reblind(batch)?
            .points
            .iter()
            .map(group::join_key)
            .collect())
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
    fn a_batch_kept_by_the_last_party_gives_the_owners_join_keys() {
        let ps = parties(3);
        let channel = Channel::new("collab", "email/sha256");
        let values = ["x", "y", "z", "w"];
        let digests: Vec<_> = values
            .iter()
            .map(|v| DigestKind::Sha256.hash(v.as_bytes()))
            .collect();
        let expected = run(&ps, 0, &values);
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        // Party 0 owns, party 1 re-blinds, party 2 keeps.
        let (pending, batch) = ps[0].blind(&channel, &digests, &mut rng).unwrap();
        let batch = ps[1].reblind(&batch).unwrap();
        let keep = KeepBatch {
            channel: channel.name().into(),
            start: 100,
            rows: vec![100, 101, 101, 230],
            points: pending.in_row_order(&batch).unwrap(),
        };
        let wire = keep.encode().unwrap();
        // 4 magic, 1 + 12 name, 8 start and count, 4 one-byte rows but the last (2), 4 points.
        assert_eq!(wire.len(), 4 + 13 + 8 + 5 + 4 * 32);
        let back = KeepBatch::decode(&wire).unwrap();
        assert_eq!(back, keep);
        assert_eq!(ps[2].join_keys(&back.points).unwrap(), expected);
        for cut in 0..wire.len() {
            assert!(KeepBatch::decode(&wire[..cut]).is_err(), "cut at {cut}");
        }
        assert!(KeepBatch::decode(&[wire.as_slice(), &[0]].concat()).is_err());
        let unordered = KeepBatch {
            rows: vec![101, 100, 102, 103],
            ..keep.clone()
        };
        assert!(matches!(unordered.encode(), Err(Error::Malformed { .. })));
        let mut huge = wire[..17].to_vec();
        huge.extend_from_slice(&[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            KeepBatch::decode(&huge),
            Err(Error::TooLarge { .. })
        ));
        let mut bad = keep;
        bad.points = BlindedBatch {
            points: vec![[0xff; 32]; 4],
        };
        assert!(matches!(
            ps[2].join_keys(&KeepBatch::decode(&bad.encode().unwrap()).unwrap().points),
            Err(Error::InvalidPointAt { index: 0 })
        ));
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
