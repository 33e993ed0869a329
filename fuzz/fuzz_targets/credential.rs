//! Fuzzes credential header parsing: arbitrary header lists never panic, and an accepted credential is
//! visible ASCII without spaces.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use permgate::auth::{Credential, read_credential};

const NAMES: [&str; 6] = [
    "authorization",
    "x-auth-email",
    "x-auth-key",
    "x_auth_key",
    "x-permgate-principal",
    "accept",
];

fuzz_target!(|data: &[u8]| {
    // Input: records separated by 0x00; the first byte of a record picks the header name.
    let mut headers = HeaderMap::new();
    for record in data.split(|byte| *byte == 0) {
        let Some((selector, value)) = record.split_first() else {
            continue;
        };
        let name = HeaderName::from_static(NAMES[usize::from(*selector) % NAMES.len()]);
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    match read_credential(&headers) {
        Ok(Credential::Token(token)) => {
            assert!(!token.is_empty() && token.bytes().all(|byte| byte.is_ascii_graphic()));
        }
        Ok(Credential::LegacyKey { email, key }) => {
            assert!(email.contains('@'));
            assert!(!key.is_empty() && key.bytes().all(|byte| byte.is_ascii_graphic()));
        }
        Err(_) => {}
    }
});
