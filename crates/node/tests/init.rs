//! `jingteng init`: a complete node directory, secrets only its owner can read, never
//! over an existing node.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use jingteng_node::{Error, NodeDir, init, read_secret};

#[test]
fn init_lays_out_a_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("retail");
    let made = init(&dir, "retail").unwrap();
    assert_eq!(made.config.party, "retail");
    assert_eq!(made.cert_sha256.len(), 64);
    for f in [
        "node.toml",
        "catalog.sqlite",
        "tls/cert.pem",
        "secrets/signing.key",
        "secrets/tls.key.pem",
    ] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let config_text = std::fs::read_to_string(dir.join("node.toml")).unwrap();
    let signing = std::fs::read_to_string(dir.join("secrets/signing.key")).unwrap();
    assert!(
        !config_text.contains(signing.trim()),
        "no secret in node.toml"
    );
    assert!(!config_text.contains("PRIVATE KEY"));

    let node = NodeDir::open(&dir).unwrap();
    let key = node.signing_key().unwrap();
    assert_eq!(
        key.verifying_key()
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        made.config.public_key
    );
    let catalog = node.catalog().unwrap();
    assert_eq!(catalog.meta("party").unwrap().as_deref(), Some("retail"));
    assert_eq!(catalog.verify_audit().unwrap(), 1);

    // Never over an existing node; nothing left beside it.
    assert!(init(&dir, "retail").is_err());
    let entries: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("retail")]);
}

#[cfg(unix)]
#[test]
fn secrets_others_can_read_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("social");
    init(&dir, "social").unwrap();
    let key = dir.join("secrets/signing.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = read_secret(&key).unwrap_err();
    assert!(matches!(err, Error::SecretExposed { .. }), "{err}");
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn bad_party_names_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let err = init(&tmp.path().join("x"), "Social Media")
        .unwrap_err()
        .to_string();
    assert!(err.contains("lower-case"), "{err}");
}

#[test]
fn set_listen_rewrites_node_toml_and_the_card() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("social");
    init(&dir, "social").unwrap();
    let mut node = NodeDir::open(&dir).unwrap();
    node.set_listen("127.0.0.1:17001").unwrap();
    assert_eq!(node.config().listen, "127.0.0.1:17001");
    let reopened = NodeDir::open(&dir).unwrap();
    assert_eq!(reopened.config(), node.config());
    assert_eq!(
        jingteng_node::contract::card(&reopened).unwrap().endpoint,
        "127.0.0.1:17001"
    );
    assert!(!dir.join("node.toml.partial").exists());
}
