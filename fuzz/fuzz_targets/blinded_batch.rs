//! Any bytes as a peer's batch of blinded points: decoding and re-blinding return a
//! batch or a typed error, never panic, and never allocate beyond the batch limit.
#![no_main]

use jingteng_psi::{BlindedBatch, Party, SecretKey};
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = BlindedBatch::decode(data) else { return };
    assert_eq!(batch.encode(), data, "decode/encode must round-trip");
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let party = Party::new(SecretKey::random(&mut rng));
    if let Ok(out) = party.reblind(&batch) {
        assert_eq!(out.len(), batch.len());
    }
});
