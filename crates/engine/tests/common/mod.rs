//! A small synthetic world with its joined view, shared by the engine's tests.

#![allow(
    dead_code,
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use jingteng_catalog::Catalog;
use jingteng_engine::{Engine, Limits, ViewInfo, view};

pub struct World {
    pub _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub spec: PathBuf,
    pub state: PathBuf,
    pub info: ViewInfo,
    pub collab: jingteng_psi::Collaboration,
}

/// Generates a world of `people` (seed `seed`), sets every party's release mode to
/// `mode`, and builds its joined view.
pub async fn world(seed: u64, people: u64, mode: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("world");
    let config = jingteng_synth::Config {
        seed,
        scale: people.to_string().parse().unwrap(),
        force: false,
        media: 1,
    };
    jingteng_synth::generate(&config, &root, &|_, _| {}).unwrap();
    let spec = root.join("collab.toml");
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(text.contains("mode = \"dp\""));
    std::fs::write(
        &spec,
        text.replace("mode = \"dp\"", &format!("mode = \"{mode}\"")),
    )
    .unwrap();
    let state = dir.path().join("state");
    let info = view::build_local(&spec, &state, Arc::new(|_: &str, _: u64| {}))
        .await
        .unwrap();
    let collab = jingteng_match::read_spec(&spec).unwrap();
    World {
        _dir: dir,
        root,
        spec,
        state,
        info,
        collab,
    }
}

impl World {
    pub async fn engine(&self, limits: Limits) -> Engine {
        Engine::open(
            &self.collab,
            &self.state,
            &self.info,
            Catalog::in_memory().unwrap(),
            limits,
        )
        .await
        .unwrap()
    }

    pub fn path(&self) -> &Path {
        &self.root
    }
}
