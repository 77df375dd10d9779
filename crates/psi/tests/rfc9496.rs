//! RFC 9496 ristretto255 test vectors, kept as data in `testdata/`, against the group
//! operations the PSI uses: encoding, decoding (rejecting every invalid encoding) and
//! the one-way map behind the hash-to-group.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
use curve25519_dalek::ristretto::RistrettoPoint;
use serde_json::Value;

fn vectors() -> Value {
    let text = include_str!("../testdata/rfc9496_ristretto255.json");
    serde_json::from_str(text).unwrap()
}

fn bytes<const N: usize>(hex: &str) -> [u8; N] {
    assert_eq!(hex.len(), 2 * N, "{hex}");
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    out
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[test]
fn multiples_of_the_generator_encode_as_published() {
    let v = vectors();
    let encodings = strings(&v["multiples_of_generator"]["encodings"]);
    assert_eq!(encodings.len(), 16);
    let mut p = RistrettoPoint::default();
    for (i, hex) in encodings.iter().enumerate() {
        let enc = bytes::<32>(hex);
        assert_eq!(jingteng_psi::encode(&[p])[0], enc, "B·{i}");
        if i > 0 {
            // Decoding (the identity aside, which peers may not send) gives the point back.
            assert_eq!(jingteng_psi::decode(&enc).unwrap(), p, "B·{i}");
        }
        p += RISTRETTO_BASEPOINT_POINT;
    }
}

#[test]
fn every_invalid_encoding_is_rejected() {
    let v = vectors();
    let mut n = 0;
    for (class, list) in v["invalid_encodings"].as_object().unwrap() {
        if class == "note" {
            continue;
        }
        for hex in strings(list) {
            assert!(
                jingteng_psi::decode(&bytes::<32>(hex)).is_err(),
                "{class}: {hex}"
            );
            n += 1;
        }
    }
    assert_eq!(n, 29);
}

#[test]
fn the_one_way_map_gives_the_published_elements() {
    let v = vectors();
    let cases = v["one_way_map"]["vectors"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    for c in cases {
        let input = bytes::<64>(c["input"].as_str().unwrap());
        let point = RistrettoPoint::from_uniform_bytes(&input);
        assert_eq!(
            jingteng_psi::encode(&[point])[0],
            bytes::<32>(c["output"].as_str().unwrap())
        );
    }
}
