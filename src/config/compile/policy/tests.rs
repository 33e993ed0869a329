//! Tests of the policy compiler: duplicate token ids and secrets, forbidden id characters, error order.

use std::path::Path;

use super::compile;
use super::ids::{
    email_byte_forbidden, email_char_forbidden, has_any, id_byte_forbidden, id_char_forbidden,
};
use crate::config::raw::RawPolicyFile;
use crate::policy::keys::KeyInterner;

/// A token id or secret hash given twice is an error naming the first definition, whether that first
/// token was kept (found through the kept tokens' own index) or not (an invalid token).
#[test]
fn duplicate_token_ids_and_secrets_name_the_first_kept_or_not() {
    let token = |id: &str, owner: &str, secret: char| {
        format!(
            r#"{{"id": "{id}", "owner": {{"user": "{owner}"}}, "secret_sha256": "{}",
                "policies": [{{"effect": "allow", "permission_groups": [{{"id": "g"}}],
                               "resources": {{"ns.user.{owner}": "*"}}}}]}}"#,
            secret.to_string().repeat(64)
        )
    };
    let first = raw(&format!(
        r#"{{"permission_groups": [{{"id": "g", "permissions": ["*"]}}],
            "users": [{{"id": "u1", "email": "u1@example.com"}}],
            "tokens": [{}, {}]}}"#,
        token("t1", "u1", 'a'),
        token("t2", "nobody", 'b'),
    ));
    let second = raw(&format!(
        r#"{{"tokens": [{}, {}, {}, {}]}}"#,
        token("t1", "u1", 'c'),
        token("t3", "u1", 'b'),
        token("t2", "u1", 'd'),
        token("t4", "u1", 'a'),
    ));
    let (one, two) = (Path::new("one.json"), Path::new("two.json"));
    let errors = compile(&[(one, &first), (two, &second)], KeyInterner::new(), "ns")
        .err()
        .unwrap();
    let seen: Vec<(String, String, String)> = errors
        .iter()
        .map(|error| {
            (
                error.file.display().to_string(),
                error.path.clone(),
                error.message.clone(),
            )
        })
        .collect();
    let expected = [
        (
            "one.json",
            "tokens[1].owner.user",
            "unknown user \"nobody\"",
        ),
        (
            "two.json",
            "tokens[0].id",
            "duplicate token \"t1\" (first defined at one.json: tokens[0].id)",
        ),
        (
            "two.json",
            "tokens[1].secret_sha256",
            "duplicate token secret hash (first defined at one.json: tokens[1].secret_sha256)",
        ),
        (
            "two.json",
            "tokens[2].id",
            "duplicate token \"t2\" (first defined at one.json: tokens[1].id)",
        ),
        (
            "two.json",
            "tokens[3].secret_sha256",
            "duplicate token secret hash (first defined at one.json: tokens[0].secret_sha256)",
        ),
    ];
    assert_eq!(
        seen,
        expected.map(|(file, path, message)| (
            file.to_string(),
            path.to_string(),
            message.to_string()
        ))
    );
}

#[test]
fn forbidden_characters_are_the_same_by_bytes_and_by_characters() {
    type Pair = (fn(u8) -> bool, fn(char) -> bool);
    let pairs: [Pair; 2] = [
        (id_byte_forbidden, id_char_forbidden),
        (email_byte_forbidden, email_char_forbidden),
    ];
    for (by_byte, by_char) in pairs {
        for byte in 0..=0x7f_u8 {
            assert_eq!(by_byte(byte), by_char(char::from(byte)), "{byte:#x}");
        }
        let texts = [
            "",
            "abc-123_x",
            "a b",
            "a\tb",
            "a\u{7f}b",
            "a*",
            "/a",
            "z\u{e9}ro",
            "a\u{a0}b",
            "a\u{2028}b",
            "a\u{85}b",
            "\u{1f600}",
            "\u{3000}",
        ];
        for text in texts {
            assert_eq!(
                has_any(text, by_byte, by_char),
                text.chars().any(by_char),
                "{text:?}"
            );
        }
    }
}

fn raw(json: &str) -> RawPolicyFile {
    serde_json::from_str(json).unwrap()
}

/// Users and accounts compile at the same time (on two threads); their errors still come in the order of
/// a compile that did one after the other: every user error (in file order), then every account error.
#[test]
fn user_and_account_errors_keep_their_order_across_files() {
    let first = raw(
        r#"{"users": [{"id": "u1", "email": "u1@example.com"}, {"id": "u2", "email": "no-at"}],
            "accounts": [{"id": "a1", "name": "A", "zones": [{"id": "z1", "name": "z1.example"},
                                                             {"id": "z1", "name": "again.example"}]}]}"#,
    );
    let second = raw(r#"{"users": [{"id": "u1", "email": "other@example.com"}],
            "accounts": [{"id": "a1", "name": "A again"}, {"id": "a 2", "name": "B"}]}"#);
    let (one, two) = (Path::new("one.json"), Path::new("two.json"));
    let errors = compile(&[(one, &first), (two, &second)], KeyInterner::new(), "ns")
        .err()
        .unwrap();
    let seen: Vec<(String, String)> = errors
        .iter()
        .map(|error| (error.file.display().to_string(), error.path.clone()))
        .collect();
    let expected = [
        ("one.json", "users[1].email"),
        ("two.json", "users[0].id"),
        ("one.json", "accounts[0].zones[1].id"),
        ("two.json", "accounts[0].id"),
        ("two.json", "accounts[1].id"),
    ];
    assert_eq!(
        seen,
        expected.map(|(file, path)| (file.to_string(), path.to_string()))
    );
    assert!(
        errors[1]
            .message
            .contains("duplicate user \"u1\" (first defined at one.json: users[0].id)")
    );
    assert!(errors[3].message.contains("duplicate account \"a1\""));
}
