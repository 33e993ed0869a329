//! Fuzzes the request-target canonicaliser: never panics, and whatever it accepts is idempotent and free
//! of the ambiguous pieces SPEC §7 rejects (`//`, dot segments, `%2F`, `%5C`, `\`, `;`, `%00`). The request
//! form (`canonicalize_request`) is idempotent too, and differs only by keeping segments that hold `%2F`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use permgate::routes::{canonicalize, canonicalize_request};

fuzz_target!(|data: &[u8]| {
    let (method, target) = match data.split_first() {
        Some((selector, rest)) => (
            ["GET", "OPTIONS", "POST", "DELETE"][usize::from(*selector) % 4],
            String::from_utf8_lossy(rest),
        ),
        None => ("GET", String::from_utf8_lossy(data)),
    };
    if let Ok(canonical) = canonicalize(method, &target) {
        let again = canonicalize(method, &canonical.path_and_query());
        assert_eq!(again.as_ref(), Ok(&canonical), "not idempotent: {target:?}");
        let path = &canonical.path;
        if path != "*" {
            assert!(path.starts_with('/'));
            for bad in ["//", "/./", "/../", "%2F", "%5C", "\\", ";", "%00"] {
                assert!(!path.contains(bad), "{target:?} -> {path:?} holds {bad:?}");
            }
            assert!(!path.ends_with("/.") && !path.ends_with("/.."));
        }
    }
    if let Ok(request) = canonicalize_request(method, &target) {
        let again = canonicalize_request(method, &request.path_and_query());
        assert_eq!(
            again.as_ref(),
            Ok(&request),
            "request form not idempotent: {target:?}"
        );
        if !request.encoded_slash {
            assert_eq!(
                canonicalize(method, &target).as_ref(),
                Ok(&request),
                "{target:?}"
            );
        }
        for bad in ["//", "/./", "/../", "%5C", "%5c", "\\", ";", "%00"] {
            assert!(
                !request.path.contains(bad),
                "{target:?} -> {:?} holds {bad:?}",
                request.path
            );
        }
    } else {
        assert!(
            canonicalize(method, &target).is_err(),
            "{target:?}: strict accepts, request refuses"
        );
    }
});
