//! Device tokens: what the media platform's ad server sends in networked mode instead
//! of the device's MD5, so that the advertiser's node can answer for the audience's
//! users without learning who they are.
//!
//! `token = HMAC-SHA256(key, md5)[..16]`, where `md5` is the 16-byte MD5 of the
//! canonical device id ([`DeviceMd5::of_device`]) and `key` is the media node's
//! 32-byte RTA key (never leaves it). The token travels as the RTA query's 32-hex
//! `device_md5` parameter, so the endpoint is unchanged.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::index::DeviceMd5;

/// Bytes of an RTA key.
pub const RTA_KEY_LEN: usize = 32;

/// A media node's secret RTA key: 32 random bytes. Zeroised on drop, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct RtaKey([u8; RTA_KEY_LEN]);

impl RtaKey {
    /// A key from its bytes (as read from the node's secret file, or random).
    pub fn from_bytes(bytes: [u8; RTA_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The key's bytes, to write to its secret file.
    pub fn as_bytes(&self) -> &[u8; RTA_KEY_LEN] {
        &self.0
    }

    /// The device's token: `HMAC-SHA256(key, md5 bytes)` truncated to its first 16
    /// bytes, in the same 16-byte form as an MD5 (an RTA index keys on it as it would
    /// on the MD5).
    pub fn token(&self, device: DeviceMd5) -> DeviceMd5 {
        // Unwrap safety: HMAC takes a key of any length.
        #[allow(clippy::expect_used)]
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(&device.to_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        DeviceMd5::from_bytes(out)
    }
}

impl std::fmt::Debug for RtaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RtaKey(..)")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use jingteng_psi::DeviceType;

    /// RFC 4231 test case 2 ("Jefe", "what do ya want for nothing?") checks the HMAC
    /// itself; the key here is 32 bytes, so the worked example of docs/audiences.md is
    /// pinned separately.
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let got: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            got,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// The worked example of docs/audiences.md ("Device tokens").
    #[test]
    fn the_documented_example() {
        let key = RtaKey::from_bytes(std::array::from_fn(|i| i as u8));
        let md5 = DeviceMd5::of_device(DeviceType::Imei, "860123456789012").unwrap();
        assert_eq!(md5.to_hex(), DOC_MD5);
        assert_eq!(key.token(md5).to_hex(), DOC_TOKEN);
        // Another key, another token; the same key, the same token.
        let other = RtaKey::from_bytes([7; RTA_KEY_LEN]);
        assert_ne!(other.token(md5), key.token(md5));
        assert_eq!(key.clone().token(md5), key.token(md5));
        assert_eq!(format!("{key:?}"), "RtaKey(..)");
    }

    const DOC_MD5: &str = "dbb69372738fe7f5b8676d045fa229e8";
    const DOC_TOKEN: &str = "b8872bacdbfab3f525744ffca8be37b2";
}
