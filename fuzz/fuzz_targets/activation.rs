//! Any bytes as the host's audience delivery to an activation party
//! (`application/vnd.jingteng.audience-rows.v1`): decoding returns a batch or a typed
//! error, never panics, never allocates beyond what the bytes hold; a decoded batch
//! re-encodes to a message that decodes to the same batch.
#![no_main]

use jingteng_node::ActivationBatch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = ActivationBatch::decode(data) else { return };
    assert!(batch.rows.windows(2).all(|w| w[0] < w[1]));
    assert!(batch.rows.iter().all(|r| *r < batch.header.records));
    let again = batch.encode().expect("a decoded batch is within the bounds");
    assert_eq!(ActivationBatch::decode(&again).as_ref(), Ok(&batch));
});
