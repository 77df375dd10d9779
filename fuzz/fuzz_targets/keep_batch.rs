//! Any bytes as a batch a member hands the host to keep: decoding and computing the join
//! keys return a result or a typed error, never panic, and never allocate beyond what
//! the bytes announce and hold (each point takes 32 bytes and its row at least one).
#![no_main]

use jingteng_psi::{KeepBatch, Party, SecretKey};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = KeepBatch::decode(data) else { return };
    assert!(batch.rows.len() * 33 <= data.len());
    assert_eq!(batch.rows.len(), batch.points.len());
    assert!(batch.rows.is_sorted() && batch.rows.first().is_none_or(|r| *r >= batch.start));
    assert_eq!(batch.encode().ok().as_deref(), Some(data), "decode/encode must round-trip");
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let party = Party::new(SecretKey::random(&mut rng));
    if let Ok(keys) = party.join_keys(&batch.points) {
        assert_eq!(keys.len(), batch.rows.len());
    }
});
