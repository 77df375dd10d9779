//! Any text as an analyst's query against the synthetic world's spec: planned and
//! approved, or refused with a rule, or rejected as bad SQL — never a panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

const SPEC: &str = include_str!("../seeds/collab.toml");

fn engine() -> &'static (tokio::runtime::Runtime, jingteng_engine::Engine) {
    static ENGINE: OnceLock<(tokio::runtime::Runtime, jingteng_engine::Engine)> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let collab = jingteng_psi::Collaboration::parse(SPEC).expect("the seed spec parses");
        let engine = rt
            .block_on(jingteng_engine::Engine::for_checking(&collab))
            .expect("an engine over empty tables");
        (rt, engine)
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(sql) = std::str::from_utf8(data) {
        let (rt, engine) = engine();
        let _ = rt.block_on(engine.approve(sql));
    }
});
