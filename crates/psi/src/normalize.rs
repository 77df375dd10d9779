//! Canonical forms of identifiers, so that a value one party holds raw matches the same
//! value another party holds hashed.
//!
//! The forms are those Chinese ad platforms publish for hashed customer-file uploads
//! (Tencent Ads): a phone is the 11-digit mobile number; an e-mail is trimmed and
//! lower-cased; an IMEI is 14–15 digits or lower-case letters; an IDFA is upper-case
//! with dashes; a MAC has no separators and is upper-case; OAID and CAID are taken as
//! issued. Digests are lower-case hex of the canonical form. See `docs/identifiers.md`.

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// The kind of thing an identifier identifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum IdType {
    /// A mobile phone number.
    Phone,
    /// An e-mail address.
    Email,
    /// A mobile device's advertising or hardware id.
    Device(DeviceType),
    /// An id both parties already share (a loyalty number, say), compared as given.
    Opaque,
}

impl IdType {
    /// The identifier family used in reports: `phone`, `email`, `device` or `opaque`.
    pub fn family(self) -> &'static str {
        match self {
            IdType::Phone => "phone",
            IdType::Email => "email",
            IdType::Device(_) => "device",
            IdType::Opaque => "opaque",
        }
    }

    /// The full name, as in a channel: `phone`, `device:imei`, ….
    pub fn name(self) -> String {
        match self {
            IdType::Device(d) => format!("device:{}", d.as_str()),
            other => other.family().to_string(),
        }
    }

    /// Linking priority: lower links first (phone > email > device > opaque).
    pub fn priority(self) -> u8 {
        match self {
            IdType::Phone => 0,
            IdType::Email => 1,
            IdType::Device(_) => 2,
            IdType::Opaque => 3,
        }
    }
}

/// Kinds of device ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum DeviceType {
    /// Android hardware id (or MEID), 14–15 characters.
    Imei,
    /// Android Open Anonymous Device Identifier.
    Oaid,
    /// Apple's advertising id.
    Idfa,
    /// China Advertising ID.
    Caid,
    /// A network interface's MAC address.
    Mac,
}

impl DeviceType {
    /// Lower-case name, as in files and specs.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::Imei => "imei",
            DeviceType::Oaid => "oaid",
            DeviceType::Idfa => "idfa",
            DeviceType::Caid => "caid",
            DeviceType::Mac => "mac",
        }
    }

    /// Parses a device type name (case-insensitive).
    pub fn parse(s: &str) -> Option<DeviceType> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "imei" => DeviceType::Imei,
            "oaid" => DeviceType::Oaid,
            "idfa" => DeviceType::Idfa,
            "caid" => DeviceType::Caid,
            "mac" => DeviceType::Mac,
            _ => return None,
        })
    }
}

/// How a column holds its identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Form {
    /// The value itself, in any of the messy forms real files have.
    Raw,
    /// Lower- or upper-case hex MD5 of the canonical form.
    Md5,
    /// Lower- or upper-case hex SHA-256 of the canonical form.
    Sha256,
}

impl Form {
    /// Lower-case name, as in specs.
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Raw => "raw",
            Form::Md5 => "md5",
            Form::Sha256 => "sha256",
        }
    }
}

/// A hash of a canonical identifier, the common ground of raw and pre-hashed columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestKind {
    /// MD5 (16 bytes).
    Md5,
    /// SHA-256 (32 bytes).
    Sha256,
}

impl DigestKind {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DigestKind::Md5 => "md5",
            DigestKind::Sha256 => "sha256",
        }
    }

    /// Digest length in bytes.
    pub fn byte_len(self) -> usize {
        match self {
            DigestKind::Md5 => 16,
            DigestKind::Sha256 => 32,
        }
    }

    /// Hashes a canonical value.
    pub fn hash(self, canonical: &[u8]) -> DigestBytes {
        let mut out = DigestBytes::default();
        match self {
            DigestKind::Md5 => out.set(&Md5::digest(canonical)),
            DigestKind::Sha256 => out.set(&Sha256::digest(canonical)),
        }
        out
    }
}

/// A 16- or 32-byte digest, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct DigestBytes {
    len: u8,
    bytes: [u8; 32],
}

impl DigestBytes {
    fn set(&mut self, b: &[u8]) {
        self.len = b.len() as u8;
        self.bytes[..b.len()].copy_from_slice(b);
    }

    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for DigestBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Identifiers are never printed, not even hashed.
        write!(f, "DigestBytes({} bytes)", self.len)
    }
}

/// Why a value was rejected. Every rejected value is counted by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Reject {
    /// A phone with characters other than digits, spaces, `+`, `-`, `(`, `)` or `.`.
    PhoneCharacters,
    /// A phone whose digits (less a `86` country code) are not 11.
    PhoneLength,
    /// Eleven digits that are not a mainland mobile number (`1` then 3–9).
    PhoneNotMobile,
    /// Not one `@` between a non-empty local part and a dotted domain, or inner spaces.
    EmailSyntax,
    /// Not the right number of hex digits for the declared digest.
    DigestSyntax,
    /// A device id that is all zeros (tracking limited) or a placeholder.
    DeviceZero,
    /// A device id not of its type's shape.
    DeviceSyntax,
    /// A row whose device type column names no known type.
    DeviceType,
}

impl Reject {
    /// Every reason, in report order.
    pub const ALL: [Reject; 8] = [
        Reject::PhoneCharacters,
        Reject::PhoneLength,
        Reject::PhoneNotMobile,
        Reject::EmailSyntax,
        Reject::DigestSyntax,
        Reject::DeviceZero,
        Reject::DeviceSyntax,
        Reject::DeviceType,
    ];

    /// Stable snake-case name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::PhoneCharacters => "phone_characters",
            Reject::PhoneLength => "phone_length",
            Reject::PhoneNotMobile => "phone_not_mobile",
            Reject::EmailSyntax => "email_syntax",
            Reject::DigestSyntax => "digest_syntax",
            Reject::DeviceZero => "device_zero",
            Reject::DeviceSyntax => "device_syntax",
            Reject::DeviceType => "device_type",
        }
    }
}

/// What a cell holds once normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Normalized {
    /// Empty or null.
    Missing,
    /// A canonical value (raw columns).
    Canonical(String),
    /// A digest of the canonical value (pre-hashed columns).
    Digest(DigestKind, DigestBytes),
    /// Rejected, for this reason.
    Rejected(Reject),
}

impl Normalized {
    /// The digest of this value of the given kind, if the value can produce one: a raw
    /// value can be hashed to any kind; a digest only is what it is.
    pub fn digest(&self, kind: DigestKind) -> Option<DigestBytes> {
        match self {
            Normalized::Canonical(c) => Some(kind.hash(c.as_bytes())),
            Normalized::Digest(k, d) if *k == kind => Some(*d),
            _ => None,
        }
    }
}

/// Normalises one cell of an identifier column.
pub fn normalize(id: IdType, form: Form, value: &str) -> Normalized {
    if value.trim().is_empty() {
        return Normalized::Missing;
    }
    let result = match form {
        Form::Md5 => hex_digest(value, DigestKind::Md5),
        Form::Sha256 => hex_digest(value, DigestKind::Sha256),
        Form::Raw => canonical(id, value).map(Normalized::Canonical),
    };
    result.unwrap_or_else(Normalized::Rejected)
}

fn hex_digest(value: &str, kind: DigestKind) -> Result<Normalized, Reject> {
    let t = value.trim().as_bytes();
    if t.len() != kind.byte_len() * 2 {
        return Err(Reject::DigestSyntax);
    }
    let mut out = [0u8; 32];
    for (i, pair) in t.chunks_exact(2).enumerate() {
        let hi = hex_val(pair[0]).ok_or(Reject::DigestSyntax)?;
        let lo = hex_val(pair[1]).ok_or(Reject::DigestSyntax)?;
        out[i] = hi << 4 | lo;
    }
    let mut d = DigestBytes::default();
    d.set(&out[..kind.byte_len()]);
    Ok(Normalized::Digest(kind, d))
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The canonical form of a raw identifier.
pub fn canonical(id: IdType, value: &str) -> Result<String, Reject> {
    match id {
        IdType::Phone => phone(value),
        IdType::Email => email(value),
        IdType::Device(d) => device(d, value),
        IdType::Opaque => Ok(value.trim().to_string()),
    }
}

/// A mainland mobile number as its 11 digits: separators (space, `-`, `.`, `(`, `)`)
/// and a country code (`+86`, `86`, `0086`, `(+86)`) are removed.
fn phone(value: &str) -> Result<String, Reject> {
    let mut digits = String::with_capacity(16);
    for c in value.trim().chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            '+' if digits.is_empty() => {}
            _ => return Err(Reject::PhoneCharacters),
        }
    }
    let national = match digits.len() {
        13 if digits.starts_with("86") => &digits[2..],
        15 if digits.starts_with("0086") => &digits[4..],
        11 => &digits[..],
        _ => return Err(Reject::PhoneLength),
    };
    let b = national.as_bytes();
    if b[0] != b'1' || !(b'3'..=b'9').contains(&b[1]) {
        return Err(Reject::PhoneNotMobile);
    }
    Ok(national.to_string())
}

/// Trimmed and lower-cased; one `@`, a non-empty local part, a dotted domain, no spaces.
fn email(value: &str) -> Result<String, Reject> {
    let t = value.trim().to_lowercase();
    let (local, domain) = t.split_once('@').ok_or(Reject::EmailSyntax)?;
    let ok = !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !t.chars().any(char::is_whitespace);
    if ok { Ok(t) } else { Err(Reject::EmailSyntax) }
}

fn is_zero(s: &str) -> bool {
    s.chars().all(|c| matches!(c, '0' | '-' | ':'))
}

fn device(kind: DeviceType, value: &str) -> Result<String, Reject> {
    let t = value.trim();
    // Zeros are checked on the canonical form too: separators may hide them.
    if is_zero(t) {
        return Err(Reject::DeviceZero);
    }
    let canonical = device_shape(kind, t)?;
    if is_zero(&canonical) {
        return Err(Reject::DeviceZero);
    }
    Ok(canonical)
}

fn device_shape(kind: DeviceType, t: &str) -> Result<String, Reject> {
    match kind {
        DeviceType::Imei => {
            let v = t.to_ascii_lowercase();
            let ok = (14..=15).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric());
            if ok { Ok(v) } else { Err(Reject::DeviceSyntax) }
        }
        DeviceType::Idfa => {
            let v = t.to_ascii_uppercase();
            let groups: Vec<&str> = v.split('-').collect();
            let ok = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
                && groups
                    .iter()
                    .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()));
            if ok { Ok(v) } else { Err(Reject::DeviceSyntax) }
        }
        DeviceType::Mac => {
            let v: String = t
                .chars()
                .filter(|c| !matches!(c, ':' | '-' | '.'))
                .collect::<String>()
                .to_ascii_uppercase();
            let ok = v.len() == 12 && v.bytes().all(|b| b.is_ascii_hexdigit());
            if ok { Ok(v) } else { Err(Reject::DeviceSyntax) }
        }
        DeviceType::Oaid | DeviceType::Caid => {
            let ok = t.len() <= 128 && !t.chars().any(char::is_whitespace);
            if ok {
                Ok(t.to_string())
            } else {
                Err(Reject::DeviceSyntax)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(id: IdType, raw: &str) -> String {
        canonical(id, raw).unwrap_or_else(|r| panic!("{raw:?} rejected: {r:?}"))
    }

    #[test]
    fn phones_in_every_written_form_are_the_same_number() {
        for raw in [
            "13800138000",
            "8613800138000",
            "+8613800138000",
            "+86 138-0013-8000",
            "138 0013 8000",
            " 138-0013-8000 ",
            "008613800138000",
            "(+86) 138.0013.8000",
        ] {
            assert_eq!(ok(IdType::Phone, raw), "13800138000", "{raw}");
        }
    }

    #[test]
    fn bad_phones_are_rejected_with_a_reason() {
        let r = |s| canonical(IdType::Phone, s).unwrap_err();
        assert_eq!(r("138001380"), Reject::PhoneLength);
        assert_eq!(r("1380013800"), Reject::PhoneLength);
        assert_eq!(r("010-88888888x"), Reject::PhoneCharacters);
        assert_eq!(r("n/a"), Reject::PhoneCharacters);
        assert_eq!(r("010-12345678"), Reject::PhoneNotMobile);
        assert_eq!(r("23800138000"), Reject::PhoneNotMobile);
        assert_eq!(r("12800138000"), Reject::PhoneNotMobile);
    }

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(ok(IdType::Email, "  Li.Lei@QQ.com  "), "li.lei@qq.com");
        for bad in [
            "n/a",
            "li.lei@",
            "@qq.com",
            "li.lei.at.qq.com",
            "a@b@c.com",
            "li lei@qq.com",
            "a@qq",
        ] {
            assert_eq!(
                canonical(IdType::Email, bad),
                Err(Reject::EmailSyntax),
                "{bad}"
            );
        }
    }

    #[test]
    fn devices_take_their_published_forms() {
        let dev = |d, s| ok(IdType::Device(d), s);
        assert_eq!(
            dev(DeviceType::Idfa, "ff1999cd-7177-4937-a474-74937a102630"),
            "FF1999CD-7177-4937-A474-74937A102630"
        );
        assert_eq!(
            dev(DeviceType::Imei, " 861234567890123 "),
            "861234567890123"
        );
        assert_eq!(dev(DeviceType::Imei, "A1000049A2B3C4"), "a1000049a2b3c4");
        assert_eq!(dev(DeviceType::Mac, "00:1a:2B:3c:4D:5e"), "001A2B3C4D5E");
        assert_eq!(dev(DeviceType::Oaid, " 4a3b-Oaid "), "4a3b-Oaid");
        let rej = |d, s| canonical(IdType::Device(d), s).unwrap_err();
        assert_eq!(
            rej(DeviceType::Idfa, "00000000-0000-0000-0000-000000000000"),
            Reject::DeviceZero
        );
        assert_eq!(rej(DeviceType::Imei, "000000000000000"), Reject::DeviceZero);
        assert_eq!(
            rej(DeviceType::Idfa, "FF1999CD71774937A47474937A102630"),
            Reject::DeviceSyntax
        );
        assert_eq!(rej(DeviceType::Imei, "8612345"), Reject::DeviceSyntax);
        // Found by the normalize fuzz target: separators hid an all-zero MAC.
        assert_eq!(
            rej(DeviceType::Mac, "000......000000000"),
            Reject::DeviceZero
        );
    }

    #[test]
    fn raw_values_match_their_published_digests() {
        // MD5 / SHA-256 of "13800138000", as a party would upload them.
        let raw = normalize(IdType::Phone, Form::Raw, "+86 138-0013-8000");
        let md5 = DigestKind::Md5.hash(b"13800138000");
        let hex: String = md5.as_bytes().iter().map(|b| format!("{b:02X}")).collect();
        let hashed = normalize(IdType::Phone, Form::Md5, &hex);
        assert_eq!(raw.digest(DigestKind::Md5), hashed.digest(DigestKind::Md5));
        assert!(hashed.digest(DigestKind::Sha256).is_none());
        assert_eq!(
            normalize(IdType::Phone, Form::Sha256, "abc"),
            Normalized::Rejected(Reject::DigestSyntax)
        );
        assert_eq!(
            normalize(IdType::Email, Form::Raw, "  "),
            Normalized::Missing
        );
    }

    #[test]
    fn known_digest_vectors() {
        let hex = |d: DigestBytes| {
            d.as_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert_eq!(
            hex(DigestKind::Md5.hash(b"abc")),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            hex(DigestKind::Sha256.hash(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
