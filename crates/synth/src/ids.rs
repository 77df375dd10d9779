//! Identifiers as real files hold them: unique per person by construction, then written
//! in the messy forms parties actually have (formatted phones, capitalised emails,
//! pre-hashed values, a few invalid ones).

use md5::Md5;
use rand::Rng;
use sha2::{Digest, Sha256};

/// The splitmix64 finaliser: a bijection on `u64`, so distinct inputs stay distinct.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Keys that make every party's record ids an unrelated permutation of the person index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdKeys {
    social: u64,
    retail: u64,
    brand: u64,
    email: u64,
    device_hi: u64,
    device_lo: u64,
    phone_offset: u64,
    news: u64,
}

impl IdKeys {
    pub(crate) fn new(seed: u64) -> Self {
        let k = |tag: u64| mix64(seed ^ mix64(tag));
        Self {
            social: k(1),
            retail: k(2),
            brand: k(3),
            email: k(4),
            device_hi: k(5),
            device_lo: k(6),
            phone_offset: k(7) % PHONE_SPACE,
            news: k(8),
        }
    }

    pub(crate) fn social_user_id(&self, person: u64) -> String {
        format!("wx{:016x}", mix64(person ^ self.social))
    }

    pub(crate) fn retail_member_id(&self, person: u64) -> String {
        format!("jd{:016x}", mix64(person ^ self.retail))
    }

    pub(crate) fn news_user_id(&self, person: u64) -> String {
        format!("tt{:016x}", mix64(person ^ self.news))
    }

    pub(crate) fn brand_customer_id(&self, person: u64) -> String {
        format!("cu{:016x}", mix64(person ^ self.brand))
    }

    /// The person's mobile number, 11 digits. `changed` selects the number the person
    /// moved to; both are unique across people for up to 10^8 people.
    pub(crate) fn phone(&self, person: u64, changed: bool) -> String {
        let (prefixes, mult): (&[&str], u64) = if changed {
            (NEW_PHONE_PREFIXES, 7_919)
        } else {
            (PHONE_PREFIXES, 48_271)
        };
        let suffix = (person.wrapping_mul(mult) + self.phone_offset) % PHONE_SPACE;
        let prefix = prefixes[(mix64(person ^ self.phone_offset) % prefixes.len() as u64) as usize];
        format!("{prefix}{suffix:08}")
    }

    /// Canonical (trimmed, lower-case) e-mail address.
    pub(crate) fn email(&self, person: u64, name: &str) -> String {
        let h = mix64(person ^ self.email);
        let domain = EMAIL_DOMAINS[(h % EMAIL_DOMAINS.len() as u64) as usize];
        format!("{name}.{}@{domain}", to_base36(h))
    }

    /// Canonical device id of the given type.
    pub(crate) fn device(&self, person: u64, kind: DeviceKind) -> String {
        let hi = mix64(person ^ self.device_hi);
        let lo = mix64(person ^ self.device_lo);
        match kind {
            DeviceKind::Imei => {
                // 14 digits (TAC "86" + serial) and the Luhn check digit.
                let body = format!("86{:012}", hi % 1_000_000_000_000);
                let check = luhn_check_digit(&body);
                format!("{body}{check}")
            }
            DeviceKind::Idfa => uuid(hi, lo).to_ascii_uppercase(),
            DeviceKind::Oaid => uuid(lo, hi),
        }
    }
}

const PHONE_SPACE: u64 = 100_000_000;
/// Mobile prefixes of the three carriers that existing numbers start with.
const PHONE_PREFIXES: &[&str] = &[
    "130", "131", "132", "133", "134", "135", "136", "137", "138", "139", "150", "151", "152",
    "153", "155", "156", "157", "158", "159", "180", "181", "182", "183", "185", "186", "187",
    "188", "189",
];
/// Prefixes reserved for numbers people changed to, disjoint from the above.
const NEW_PHONE_PREFIXES: &[&str] = &["166", "172", "177", "191", "198", "199"];
const EMAIL_DOMAINS: &[&str] = &[
    "qq.com",
    "qq.com",
    "163.com",
    "126.com",
    "sina.com",
    "gmail.com",
    "outlook.com",
    "foxmail.com",
];

/// Kinds of mobile advertising ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceKind {
    Imei,
    Oaid,
    Idfa,
}

impl DeviceKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Imei => "imei",
            Self::Oaid => "oaid",
            Self::Idfa => "idfa",
        }
    }

    /// The invalid all-zero value a device reports when ad tracking is limited.
    pub(crate) fn zero_value(self) -> &'static str {
        match self {
            Self::Imei => "000000000000000",
            Self::Oaid => "00000000-0000-0000-0000-000000000000",
            Self::Idfa => "00000000-0000-0000-0000-000000000000",
        }
    }
}

fn uuid(hi: u64, lo: u64) -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

fn to_base36(mut v: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::with_capacity(13);
    loop {
        out.push(DIGITS[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    out.reverse();
    out.into_iter().map(char::from).collect()
}

fn luhn_check_digit(body: &str) -> u32 {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let dd = d * 2;
                if dd > 9 { dd - 9 } else { dd }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// Lower-case hex MD5 of a canonical value.
pub(crate) fn md5_hex(canonical: &str) -> String {
    hex(&Md5::digest(canonical.as_bytes()))
}

/// Lower-case hex SHA-256 of a canonical value.
pub(crate) fn sha256_hex(canonical: &str) -> String {
    hex(&Sha256::digest(canonical.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Unwrap safety: writing to a String cannot fail.
        #[allow(clippy::unwrap_used)]
        write!(s, "{b:02x}").unwrap();
    }
    s
}

/// A raw phone number written the way a retailer's export holds it.
pub(crate) fn messy_phone(canonical: &str, rng: &mut impl Rng) -> String {
    let (a, b, c) = (&canonical[..3], &canonical[3..7], &canonical[7..]);
    match rng.random_range(0..100) {
        0..15 => format!("+86 {a}-{b}-{c}"),
        15..30 => format!("86{canonical}"),
        30..40 => format!("+86{canonical}"),
        40..50 => format!("{a} {b} {c}"),
        _ => canonical.to_string(),
    }
}

/// A phone number that no canonicalisation can rescue (a digit lost, or a landline).
pub(crate) fn invalid_phone(canonical: &str, rng: &mut impl Rng) -> String {
    match rng.random_range(0..3) {
        0 => canonical[..10].to_string(),
        1 => format!("010-{}", &canonical[3..11]),
        _ => format!("2{}", &canonical[1..]),
    }
}

/// An e-mail address with the capitals and stray spaces of hand-typed CRM data.
pub(crate) fn messy_email(canonical: &str, rng: &mut impl Rng) -> String {
    let mut s = if rng.random_bool(0.3) {
        let mut chars: Vec<char> = canonical.chars().collect();
        if let Some(first) = chars.first_mut() {
            *first = first.to_ascii_uppercase();
        }
        if rng.random_bool(0.3) {
            chars.iter().collect::<String>().to_ascii_uppercase()
        } else {
            chars.into_iter().collect()
        }
    } else {
        canonical.to_string()
    };
    if rng.random_bool(0.15) {
        s = format!(" {s}");
    }
    if rng.random_bool(0.15) {
        s.push_str("  ");
    }
    s
}

/// An e-mail address that is not one.
pub(crate) fn invalid_email(canonical: &str, rng: &mut impl Rng) -> String {
    match rng.random_range(0..3) {
        0 => canonical.replace('@', ".at."),
        1 => canonical.split('@').next().unwrap_or_default().to_string() + "@",
        _ => "n/a".to_string(),
    }
}

/// A hex digest that lost characters on the way (truncated by a spreadsheet, say).
pub(crate) fn invalid_hex(hex: &str) -> String {
    hex[..hex.len() - 1].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_matches_a_known_imei() {
        // 49015420323751 + check digit 8 is the textbook example.
        assert_eq!(luhn_check_digit("49015420323751"), 8);
    }

    #[test]
    fn digests_match_known_vectors() {
        assert_eq!(md5_hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn phones_are_unique_and_valid() {
        let keys = IdKeys::new(7);
        let mut seen = std::collections::HashSet::new();
        for p in 0..20_000 {
            for changed in [false, true] {
                let phone = keys.phone(p, changed);
                assert_eq!(phone.len(), 11);
                assert!(phone.starts_with('1'));
                assert!(seen.insert(phone));
            }
        }
    }

    #[test]
    fn messy_phones_keep_their_digits() {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        for _ in 0..100 {
            let m = messy_phone("13800138000", &mut rng);
            let digits: String = m.chars().filter(char::is_ascii_digit).collect();
            assert!(digits.ends_with("13800138000"), "{m}");
        }
    }
}
