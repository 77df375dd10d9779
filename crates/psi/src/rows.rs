//! Rows as they travel with join keys and points: ascending, each as its difference from
//! the previous one in LEB128 (one byte for the usual step of 1 to 127), so that a row
//! costs about one byte on the wire instead of four.

use crate::{Error, Result};

/// Appends `rows` (non-decreasing, all `>= base`) to `out`, each as its LEB128 difference
/// from the previous row (the first from `base`). A row out of order is an error.
pub fn encode_rows(base: u32, rows: &[u32], out: &mut Vec<u8>) -> Result<()> {
    let mut prev = base;
    for &row in rows {
        let mut d = row.checked_sub(prev).ok_or_else(|| Error::Malformed {
            what: format!("row {row} comes after row {prev}: rows must be ascending"),
        })?;
        loop {
            let byte = (d & 0x7f) as u8;
            d >>= 7;
            if d == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        prev = row;
    }
    Ok(())
}

/// Reads `count` rows written by [`encode_rows`] from the start of `bytes`; returns them
/// and the bytes read. Truncation, a difference in more bytes than it needs (each has
/// one encoding), one past 32 bits and a row past `u32::MAX` are errors; nothing is allocated before `bytes` is known to hold `count`
/// differences (each takes at least a byte).
pub fn decode_rows(bytes: &[u8], base: u32, count: usize) -> Result<(Vec<u32>, usize)> {
    if bytes.len() < count {
        return Err(Error::Truncated {
            expected: count,
            got: bytes.len(),
        });
    }
    let mut rows = Vec::with_capacity(count);
    let mut at = 0usize;
    let mut prev = base;
    for _ in 0..count {
        let mut d: u32 = 0;
        let mut shift = 0u32;
        loop {
            let byte = *bytes.get(at).ok_or(Error::Truncated {
                expected: at + 1,
                got: bytes.len(),
            })?;
            at += 1;
            let bits = u32::from(byte & 0x7f);
            if shift == 28 && (byte & 0x80 != 0 || bits > 0x0f) {
                return Err(Error::Malformed {
                    what: "a row difference longer than 32 bits".into(),
                });
            }
            d |= bits << shift;
            if byte & 0x80 == 0 {
                // One encoding per difference: no trailing zero groups.
                if shift > 0 && bits == 0 {
                    return Err(Error::Malformed {
                        what: "a row difference in more bytes than it needs".into(),
                    });
                }
                break;
            }
            shift += 7;
        }
        prev = prev.checked_add(d).ok_or_else(|| Error::Malformed {
            what: "a row past 4,294,967,295".into(),
        })?;
        rows.push(prev);
    }
    Ok((rows, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_in_about_a_byte_each() {
        let rows = [5u32, 6, 6, 7, 200, 70_000, u32::MAX];
        let mut out = Vec::new();
        encode_rows(5, &rows, &mut out).unwrap();
        assert_eq!(out[..4], [0, 1, 0, 1]);
        out.extend_from_slice(b"tail");
        let (back, used) = decode_rows(&out, 5, rows.len()).unwrap();
        assert_eq!(back, rows);
        assert_eq!(&out[used..], b"tail");
        let mut dense = Vec::new();
        encode_rows(0, &(0..1000).collect::<Vec<_>>(), &mut dense).unwrap();
        assert_eq!(dense.len(), 1000);
    }

    #[test]
    fn bad_rows_are_typed_errors() {
        assert!(encode_rows(3, &[2], &mut Vec::new()).is_err());
        assert!(encode_rows(0, &[4, 3], &mut Vec::new()).is_err());
        assert!(matches!(
            decode_rows(&[1], 0, 2),
            Err(Error::Truncated { .. })
        ));
        assert!(matches!(
            decode_rows(&[0x80, 0x80], 0, 1),
            Err(Error::Truncated { .. })
        ));
        // Over-long: a sixth byte, or bits past 32 in the fifth.
        assert!(decode_rows(&[0xff, 0xff, 0xff, 0xff, 0x1f], 0, 1).is_err());
        assert!(decode_rows(&[0x80, 0x80, 0x80, 0x80, 0x80, 0], 0, 1).is_err());
        assert!(decode_rows(&[0x81, 0], 0, 1).is_err(), "not minimal");
        assert_eq!(
            decode_rows(&[0xff, 0xff, 0xff, 0xff, 0x0f], 0, 1)
                .unwrap()
                .0,
            [u32::MAX]
        );
        assert!(decode_rows(&[1], u32::MAX, 1).is_err());
    }
}
