//! Any bytes as a media node's RTA token message to an audience's owner
//! (`application/vnd.jingteng.rta-tokens.v1`): decoding returns a list or a typed
//! error, never panics, never allocates beyond what the bytes hold; a decoded list is
//! strictly increasing and re-encodes to a message that decodes to the same list.
#![no_main]

use jingteng_node::TokenList;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(list) = TokenList::decode(data) else { return };
    assert!(list.tokens.windows(2).all(|w| w[0] < w[1]));
    let again = list.encode().expect("a decoded list is within the bounds");
    assert_eq!(TokenList::decode(&again).as_ref(), Ok(&list));
});
