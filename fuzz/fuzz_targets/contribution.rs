//! Any bytes as a member's match contribution: decoded or refused, never a panic, and
//! never more keys than the bytes can hold (each takes 16 bytes and its row at least one).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = jingteng_node::decode_contribution(data) {
        let announced: usize = c.keys.iter().map(|(_, k)| k.len()).sum();
        assert!(announced * 17 <= data.len());
        for (_, k) in &c.keys {
            assert!(k.is_sorted_by_key(|(row, _)| *row), "rows ascend");
        }
    }
});
