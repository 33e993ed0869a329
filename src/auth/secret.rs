//! The format of the tokens `permgate token new` prints: `pgt_` + 33 base62 characters of 192 random bits +
//! a 6-character base62 CRC32 checksum of those 33 characters (43 characters in all).
//!
//! The prefix makes a leaked token recognisable to secret scanners; the checksum lets `validate` and
//! `check` tell a mistyped token from an unknown one without any lookup. Authentication does not use this:
//! any presented string is looked up by its SHA-256. Pure: the caller supplies the randomness.

/// The prefix of every permgate token.
pub const TOKEN_PREFIX: &str = "pgt_";

/// Base62 characters encoding the 24 random bytes (62^33 > 2^192).
const BODY_LEN: usize = 33;
/// Base62 characters encoding the CRC32 (62^6 > 2^32).
const CHECKSUM_LEN: usize = 6;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The token for 24 random bytes (192 bits of entropy, from a CSPRNG in the caller).
pub fn encode_token(random: &[u8; 24]) -> String {
    let body = base62(random, BODY_LEN);
    let checksum = base62(&crc32(body.as_bytes()).to_be_bytes(), CHECKSUM_LEN);
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + BODY_LEN + CHECKSUM_LEN);
    token.push_str(TOKEN_PREFIX);
    token.push_str(&body);
    token.push_str(&checksum);
    token
}

/// Whether `s` has the shape of a permgate token and its checksum is right (a typo is caught).
pub fn looks_like_permgate_token(s: &str) -> bool {
    let Some(rest) = s.strip_prefix(TOKEN_PREFIX) else {
        return false;
    };
    if rest.len() != BODY_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    match (rest.get(..BODY_LEN), rest.get(BODY_LEN..)) {
        (Some(body), Some(checksum)) => {
            base62(&crc32(body.as_bytes()).to_be_bytes(), CHECKSUM_LEN) == checksum
        }
        _ => false,
    }
}

/// The big-endian number in `bytes`, in base62, left-padded with `0` to `width` digits (the low `width`
/// digits if it does not fit; callers choose a width that fits).
fn base62(bytes: &[u8], width: usize) -> String {
    let mut number = bytes.to_vec();
    let mut digits = vec![b'0'; width];
    for slot in digits.iter_mut().rev() {
        let mut remainder: u32 = 0;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            // value < 62 * 256, so the quotient fits in a byte.
            *byte = u8::try_from(value / 62).unwrap_or(u8::MAX);
            remainder = value % 62;
        }
        *slot = BASE62.get(remainder as usize).copied().unwrap_or(b'0');
    }
    digits.into_iter().map(char::from).collect()
}

/// CRC-32 (IEEE 802.3, the one of zip and PNG), bit by bit: it runs once per token, so no table.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn base62_is_fixed_width_big_endian() {
        assert_eq!(base62(&[0, 0], 3), "000");
        assert_eq!(base62(&[0, 61], 3), "00z");
        assert_eq!(base62(&[0, 62], 3), "010");
        assert_eq!(base62(&u32::MAX.to_be_bytes(), 6), "4gfFC3");
        assert_eq!(base62(&[0xFF; 24], BODY_LEN).len(), BODY_LEN);
        assert_ne!(base62(&[0xFF; 24], BODY_LEN).as_bytes()[0], b'0');
    }

    #[test]
    fn tokens_have_the_documented_shape() {
        let token = encode_token(&[0u8; 24]);
        assert_eq!(token.len(), 43);
        assert!(token.starts_with("pgt_000000000000000000000000000000000"));
        assert!(looks_like_permgate_token(&token));
        let other = encode_token(&[7u8; 24]);
        assert_ne!(token, other);
        assert!(looks_like_permgate_token(&other));
    }

    #[test]
    fn mistyped_or_foreign_tokens_are_not_recognised() {
        let token = encode_token(&[42u8; 24]);
        assert!(!looks_like_permgate_token(""));
        assert!(!looks_like_permgate_token("pgt_"));
        assert!(!looks_like_permgate_token(&token.replace("pgt_", "pgx_")));
        assert!(!looks_like_permgate_token(&token[..42]));
        assert!(!looks_like_permgate_token(&format!("{token}0")));
        assert!(!looks_like_permgate_token(&format!(
            "{}-{}",
            &token[..10],
            &token[11..]
        )));
        assert!(!looks_like_permgate_token(
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
        ));
    }

    proptest! {
        #[test]
        fn every_token_is_recognised_and_any_one_character_change_is_caught(
            random in proptest::array::uniform24(any::<u8>()),
            position in 4usize..43,
            replacement in proptest::sample::select(BASE62.to_vec()),
        ) {
            let token = encode_token(&random);
            prop_assert!(looks_like_permgate_token(&token));
            let mut bytes = token.clone().into_bytes();
            prop_assume!(bytes[position] != replacement);
            bytes[position] = replacement;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(!looks_like_permgate_token(&changed), "{} → {}", token, changed);
        }
    }
}
