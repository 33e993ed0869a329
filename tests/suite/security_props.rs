//! Security properties (proptest, modest case counts so they run in CI): canonicalisation is idempotent and
//! its output has none of the ambiguous pieces; a target the canonicaliser rejects never reaches the
//! upstream and an accepted one reaches it exactly as canonicalised (through a running gateway); and no
//! input at all makes `canonicalize`, `read_credential`, `RouteTable::compile` or config loading panic.
//! The same inputs are fuzzed without bounds by the cargo-fuzz targets in fuzz/.

use crate::common;

use common::*;
use http::{HeaderMap, HeaderName, HeaderValue};
use permgate::auth::credential::{Credential, read_credential};
use permgate::config::SourceFile;
use permgate::config::compile::routes;
use permgate::policy::KeyInterner;
use permgate::routes::canonicalize;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// The dangerous pieces a target is built from.
const PIECES: &[&str] = &[
    "/",
    "/",
    "/",
    ".",
    "..",
    "%2e",
    "%2E",
    "%2F",
    "%2f",
    "%5C",
    "%5c",
    ";",
    "\\",
    "%00",
    "%",
    "%g",
    "%e2%82",
    "%c0%ae",
    "%41",
    "%7e",
    "%3a",
    "a",
    "b",
    "zone-1",
    "dns_records",
    "~",
    "-",
    "_",
    "?",
    "=",
    "&",
    "{",
    "@",
];
const METHODS: &[&str] = &["GET", "POST", "OPTIONS", "DELETE"];

fn target() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..14).prop_map(|pieces| pieces.concat())
}

/// A target that starts like the allowed route, so that accepted ones often reach the upstream.
fn gateway_target() -> impl Strategy<Value = String> {
    prop_oneof![
        target().prop_map(|tail| format!("/client/v4/zones/zone-1/dns_records/{tail}")),
        target().prop_map(|tail| format!("/client/v4/zones/{tail}/dns_records")),
        target().prop_map(|tail| format!("/{tail}")),
        target(),
    ]
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn canonicalisation_is_idempotent_and_unambiguous(
        method in prop::sample::select(METHODS),
        target in gateway_target(),
    ) {
        if let Ok(canonical) = canonicalize(method, &target) {
            let again = canonicalize(method, &canonical.path_and_query());
            prop_assert_eq!(again.as_ref(), Ok(&canonical), "not idempotent for {:?}", target);
            let path = &canonical.path;
            if path != "*" {
                prop_assert!(path.starts_with('/'));
                for bad in ["//", "/./", "/../", "%2F", "%5C", "\\", ";", "%00", "%2E", "%2e"] {
                    prop_assert!(!path.contains(bad), "{:?} -> {:?} holds {:?}", target, path, bad);
                }
                prop_assert!(!path.ends_with("/.") && !path.ends_with("/.."), "{:?} -> {:?}", target, path);
            }
        }
    }

    #[test]
    fn canonicalize_never_panics(method in ".{0,8}", target in ".{0,64}") {
        let _ = canonicalize(&method, &target);
    }

    #[test]
    fn canonicalize_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = canonicalize("GET", &String::from_utf8_lossy(&bytes));
    }
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn read_credential_never_panics_and_accepts_only_visible_ascii(
        headers in prop::collection::vec(
            (
                prop::sample::select(&["authorization", "Authorization", "x-auth-email", "x-auth-key", "x_auth_key", "x-other"][..]),
                prop::collection::vec(any::<u8>(), 0..40),
            ),
            0..5,
        ),
        bearer_prefix in any::<bool>(),
    ) {
        let mut map = HeaderMap::new();
        for (name, mut value) in headers {
            if bearer_prefix && name.eq_ignore_ascii_case("authorization") {
                let mut prefixed = b"Bearer ".to_vec();
                prefixed.append(&mut value);
                value = prefixed;
            }
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(&value)) {
                map.append(name, value);
            }
        }
        match read_credential(&map) {
            Ok(Credential::Token(token)) => {
                prop_assert!(!token.is_empty());
                prop_assert!(token.bytes().all(|byte| byte.is_ascii_graphic()), "{:?}", token);
            }
            Ok(Credential::LegacyKey { email, key }) => {
                prop_assert!(email.contains('@'));
                prop_assert!(key.bytes().all(|byte| byte.is_ascii_graphic()));
            }
            Err(_) => {}
        }
    }
}

/// Route-file text: either arbitrary, or YAML assembled from route-like pieces.
fn route_text() -> impl Strategy<Value = String> {
    let line = prop::sample::select(
        &[
            "routes:\n",
            "  - id: r\n",
            "  - method: GET\n",
            "    method: [GET, POST]\n",
            "    method: \"*\"\n",
            "    path: /a/{id}\n",
            "    path: /a/{*rest}\n",
            "    path: /a/{id}/{id}\n",
            "    path: /{x\n",
            "    path: \"\"\n",
            "    permissions: [\"#a:read\"]\n",
            "    permissions: { any_of: [\"#a:*\", \"x*y\"] }\n",
            "    scope: { zone: id }\n",
            "    scope: { account: missing }\n",
            "    scope: user\n",
            "    scope: any\n",
            "    public: true\n",
            "    handler: verify_token\n",
            "- [\n",
            ": :\n",
            "    \t\n",
        ][..],
    );
    prop_oneof![
        prop::collection::vec(line, 0..16).prop_map(|lines| lines.concat()),
        ".{0,200}",
    ]
}

proptest! {
    #![proptest_config(config(1_000))]

    #[test]
    fn route_table_compile_never_panics(text in route_text()) {
        let mut keys = KeyInterner::new();
        let _ = routes::compile(&[SourceFile::from_text("routes/fuzz.yaml", text)], &mut keys);
    }
}

#[test]
fn config_loading_never_panics_on_arbitrary_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("routes")).unwrap();
    std::fs::write(
        root.join("gateway.yaml"),
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream: { url: \"http://127.0.0.1:1\" }\n\
         policy_files: [policy.yaml]\nroute_files: [routes]\n",
    )
    .unwrap();
    const CONFIG_PIECES: &[&[u8]] = &[
        b"permission_groups:\n",
        b"  - id: g\n",
        b"    permissions: [\"#a:*\"]\n",
        b"accounts:\n",
        b"  - { id: a, name: A, zones: [{ id: z, name: z.example }] }\n",
        b"users:\n",
        b"  - { id: u, email: u@example.com }\n",
        b"tokens:\n",
        b"  - { id: t, name: t, owner: { user: u }, secret_sha256: aa, status: active }\n",
        b"    condition: { request.ip: { in: [10.0.0.0/33] } }\n",
        b"    not_before: 2024-13-01T00:00:00Z\n",
        b"\xff\xfe",
        b"{[",
        b"&anchor ",
        b"*anchor\n",
    ];
    let pieces = prop::sample::select(CONFIG_PIECES);
    let strategy = prop_oneof![
        prop::collection::vec(pieces, 0..16).prop_map(|pieces| pieces.concat()),
        prop::collection::vec(any::<u8>(), 0..300),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&strategy, |bytes| {
            std::fs::write(root.join("policy.yaml"), &bytes).unwrap();
            let _ = permgate::config::load(&root.join("gateway.yaml"));
            std::fs::write(root.join("routes/r.yaml"), &bytes).unwrap();
            let _ = permgate::config::load(&root.join("gateway.yaml"));
            std::fs::remove_file(root.join("routes/r.yaml")).unwrap();
            Ok(())
        })
        .unwrap();
}

/// Through a running gateway: every random target is either refused with 400 (exactly when the
/// canonicaliser rejects it) or, when forwarded, reaches the upstream exactly as canonicalised.
#[test]
fn a_rejected_target_never_reaches_the_upstream() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let setup = runtime.block_on(setup(|_| {}));
    let authorization = bearer(TOKEN_READ);
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    let forwarded = std::cell::Cell::new(0);
    runner
        .run(&gateway_target(), |target| {
            let expected = canonicalize("GET", &target);
            let before = setup.upstream.requests().len();
            let response = runtime.block_on(send(
                setup.addr(),
                "GET",
                &target,
                &[("Authorization", &authorization)],
            ));
            let seen = setup.upstream.requests();
            let new = &seen[before..];
            match &expected {
                Err(rejection) => {
                    prop_assert_eq!(response.status, 400, "{:?} ({:?})", target, rejection);
                    prop_assert!(new.is_empty(), "{:?} reached the upstream", target);
                }
                Ok(canonical) => {
                    // Accepted: anything but a rejected target (400/6003); no route is 400/7000.
                    prop_assert!(
                        response.status != 400 || response.code() == Some(7000),
                        "{:?} was accepted by canonicalize, answered {} {}",
                        target,
                        response.status,
                        response.body
                    );
                    if response.status == 200 {
                        prop_assert_eq!(new.len(), 1);
                        prop_assert_eq!(&new[0].target, &canonical.path_and_query());
                        forwarded.set(forwarded.get() + 1);
                    } else {
                        prop_assert!(
                            new.is_empty(),
                            "{:?} answered {} but was forwarded",
                            target,
                            response.status
                        );
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    eprintln!("{} of 300 random targets were forwarded", forwarded.get());
}
