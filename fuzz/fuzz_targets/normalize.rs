//! Any text, as any identifier type in any form: normalisation returns a value or a
//! rejection, never panics, and a canonical value is a fixed point.
#![no_main]

use jingteng_psi::normalize::{canonical, normalize};
use jingteng_psi::{DeviceType, DigestKind, Form, IdType, Normalized};
use libfuzzer_sys::fuzz_target;

const TYPES: [IdType; 8] = [
    IdType::Phone,
    IdType::Email,
    IdType::Opaque,
    IdType::Device(DeviceType::Imei),
    IdType::Device(DeviceType::Oaid),
    IdType::Device(DeviceType::Idfa),
    IdType::Device(DeviceType::Caid),
    IdType::Device(DeviceType::Mac),
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for t in TYPES {
        for form in [Form::Raw, Form::Md5, Form::Sha256] {
            let n = normalize(t, form, text);
            let _ = n.digest(DigestKind::Md5);
            let _ = n.digest(DigestKind::Sha256);
            if let Normalized::Canonical(c) = &n {
                assert_eq!(canonical(t, c).as_deref(), Ok(c.as_str()), "{t:?} not idempotent");
            }
        }
    }
});
