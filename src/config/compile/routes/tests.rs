//! Tests of the route compiler and the table it builds: compile errors with their paths, lookups, and
//! agreement with a naive matcher.

use matchit::Router;
use proptest::prelude::*;

use super::*;
use crate::routes::{CredentialKind, target};

fn source(name: &str, yaml: &str) -> SourceFile {
    SourceFile::from_text(name, yaml)
}

fn compile_with(yaml: &str, keys: &mut KeyInterner) -> Result<RouteTable, Vec<ConfigError>> {
    super::compile(&[source("routes/a.yaml", yaml)], keys)
}

fn compile(yaml: &str) -> RouteTable {
    match compile_with(yaml, &mut KeyInterner::new()) {
        Ok(table) => table,
        Err(errors) => panic!("unexpected errors: {errors:#?}"),
    }
}

fn errors(yaml: &str) -> Vec<ConfigError> {
    match compile_with(yaml, &mut KeyInterner::new()) {
        Ok(table) => panic!("expected errors, compiled {} routes", table.len()),
        Err(errors) => errors,
    }
}

/// Asserts that compiling `yaml` gives exactly one error, at `path`, whose message holds `needle`.
#[track_caller]
fn assert_error(yaml: &str, path: &str, needle: &str) {
    let errors = errors(yaml);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let error = &errors[0];
    assert_eq!(error.path, path, "{error}");
    assert!(
        error.message.contains(needle),
        "{error:?} should mention {needle:?}"
    );
    assert_eq!(error.file, Path::new("routes/a.yaml"));
}

/// One route with the given fields (flow-style YAML inside `routes:`).
fn one(fields: &str) -> String {
    format!("routes:\n  - {{ {fields} }}\n")
}

#[test]
fn all_of_and_any_of_requirements() {
    let yaml = r##"
routes:
  - method: PUT
    path: /client/v4/accounts/{account_id}/billing
    permissions: ["#billing:read", "#billing:edit"]
    scope: { account: account_id }
  - method: GET
    path: /client/v4/accounts/{account_identifier}/dex/colos
    permissions: { any_of: ["#dex:read", "#teams:report"] }
    scope: { account: account_identifier }
  - method: POST
    path: /client/v4/accounts/{account_id}/billing
    permissions: { all_of: ["#billing:edit", "#billing:edit"] }
    scope: { account: account_id }
"##;
    let mut keys = KeyInterner::new();
    let table = compile_with(yaml, &mut keys).unwrap();
    let id = |name: &str| keys.get(name).unwrap();
    let billing = table
        .lookup("PUT", "/client/v4/accounts/a1/billing")
        .unwrap();
    assert_eq!(
        billing.route.requirement,
        Requirement::AllOf(vec![id("#billing:read"), id("#billing:edit")].into())
    );
    let dex = table
        .lookup("GET", "/client/v4/accounts/a1/dex/colos")
        .unwrap();
    assert_eq!(
        dex.route.requirement,
        Requirement::AnyOf(vec![id("#dex:read"), id("#teams:report")].into())
    );
    let post = table
        .lookup("POST", "/client/v4/accounts/a1/billing")
        .unwrap();
    assert_eq!(
        post.route.requirement,
        Requirement::AllOf(vec![id("#billing:edit")].into()),
        "duplicates collapse"
    );
    assert_eq!(keys.len(), 4);
}

#[test]
fn the_scope_parameter_gives_the_resource_id_whatever_its_name() {
    let yaml = r##"
routes:
  - { method: GET, path: "/a/{account_id}/x", permissions: [k], scope: { account: account_id } }
  - { method: GET, path: "/b/{account_identifier}/x", permissions: [k], scope: { account: account_identifier } }
  - { method: GET, path: "/c/{accountId}/x", permissions: [k], scope: { account: accountId } }
  - { method: GET, path: "/d/{zone_id}/x", permissions: [k], scope: { zone: zone_id } }
  - { method: GET, path: "/e/{zone_identifier}/x", permissions: [k], scope: { zone: zone_identifier } }
  - { method: GET, path: "/f/{zone}/x", permissions: [k], scope: { zone: zone } }
  - { method: GET, path: "/g/{identifier}/x", permissions: [k], scope: { zone: identifier } }
  - { method: GET, path: "/h/{account_id}/zones/{zone_id}/{rule_id}", permissions: [k], scope: { zone: zone_id } }
  - { method: GET, path: "/h/{account_id}/rules/{rule_id}", permissions: [k], scope: { account: account_id } }
"##;
    let table = compile(yaml);
    for (path, scope, id) in [
        (
            "/a/A1/x",
            Scope::Account {
                param: "account_id".into(),
            },
            "A1",
        ),
        (
            "/b/A2/x",
            Scope::Account {
                param: "account_identifier".into(),
            },
            "A2",
        ),
        (
            "/c/A3/x",
            Scope::Account {
                param: "accountId".into(),
            },
            "A3",
        ),
        (
            "/d/Z1/x",
            Scope::Zone {
                param: "zone_id".into(),
            },
            "Z1",
        ),
        (
            "/e/Z2/x",
            Scope::Zone {
                param: "zone_identifier".into(),
            },
            "Z2",
        ),
        (
            "/f/Z3/x",
            Scope::Zone {
                param: "zone".into(),
            },
            "Z3",
        ),
        (
            "/g/Z4/x",
            Scope::Zone {
                param: "identifier".into(),
            },
            "Z4",
        ),
        (
            "/h/A5/zones/Z5/R5",
            Scope::Zone {
                param: "zone_id".into(),
            },
            "Z5",
        ),
        (
            "/h/A6/rules/R6",
            Scope::Account {
                param: "account_id".into(),
            },
            "A6",
        ),
    ] {
        let matched = table.lookup("GET", path).unwrap();
        assert_eq!(matched.route.scope, scope, "{path}");
        assert_eq!(matched.resource_id, Some(id), "{path}");
    }
}

#[test]
fn parameters_are_found_by_position_when_routes_share_a_prefix_with_other_names() {
    let yaml = r##"
routes:
  - { method: GET, path: "/zones/{zone_id}/dns_records/{record_id}", permissions: [k], scope: { zone: zone_id } }
  - { method: GET, path: "/zones/{identifier}/settings", permissions: [k], scope: { zone: identifier } }
  - { method: GET, path: "/zones/{z}/{kind}/{name}/{more}/{zz}", permissions: [k], scope: { zone: zz } }
"##;
    let table = compile(yaml);
    assert_eq!(
        table
            .lookup("GET", "/zones/Z1/dns_records/R1")
            .unwrap()
            .resource_id,
        Some("Z1")
    );
    assert_eq!(
        table
            .lookup("GET", "/zones/Z2/settings")
            .unwrap()
            .resource_id,
        Some("Z2")
    );
    assert_eq!(
        table
            .lookup("GET", "/zones/a/b/c/d/Z3")
            .unwrap()
            .resource_id,
        Some("Z3")
    );
}

#[test]
fn user_any_none_and_public_routes() {
    let yaml = r##"
routes:
  - { method: GET, path: /client/v4/user, permissions: [com.cloudflare.api.user.read], scope: user }
  - { method: GET, path: /client/v4/zones, permissions: [com.cloudflare.api.account.zone.list], scope: any }
  - { method: GET, path: /client/v4/user/tokens/verify, scope: none, handler: verify_token }
  - { method: GET, path: /client/v4/ips, public: true, id: ips }
"##;
    let table = compile(yaml);
    assert_eq!(table.len(), 4);
    let user = table.lookup("GET", "/client/v4/user").unwrap();
    assert_eq!(
        (user.route.scope.clone(), user.resource_id),
        (Scope::User, None)
    );
    assert_eq!(
        table.lookup("GET", "/client/v4/zones").unwrap().route.scope,
        Scope::Any
    );
    let verify = table
        .lookup("GET", "/client/v4/user/tokens/verify")
        .unwrap()
        .route;
    assert_eq!(verify.scope, Scope::None);
    assert_eq!(verify.requirement, Requirement::None);
    assert_eq!(verify.handler, Some(Handler::VerifyToken));
    assert_eq!(
        &*verify.label, "/client/v4/user/tokens/verify",
        "the label defaults to the pattern"
    );
    let ips = table.lookup("GET", "/client/v4/ips").unwrap().route;
    assert!(ips.public);
    assert_eq!(
        (ips.scope.clone(), ips.requirement.clone()),
        (Scope::None, Requirement::None)
    );
    assert_eq!(&*ips.label, "ips");
    assert_eq!(table.routes().len(), 4);
}

#[test]
fn method_lists_and_any_method() {
    let yaml = r##"
routes:
  - { method: [GET, HEAD], path: /a, scope: none }
  - { method: "*", path: "/b/{id}", scope: none, id: any-b }
  - { method: DELETE, path: "/b/{id}", permissions: [k], scope: user, id: delete-b }
  - { method: [PROPFIND, M-SEARCH], path: /c, scope: none }
"##;
    let table = compile(yaml);
    let a = table.lookup("GET", "/a").unwrap().route;
    assert_eq!(&*a.methods, "GET, HEAD");
    assert!(table.lookup("HEAD", "/a").is_some());
    assert!(
        table.lookup("POST", "/a").is_none(),
        "a path that exists for other methods only is no match"
    );
    assert!(
        table.lookup("get", "/a").is_none(),
        "methods are case-sensitive"
    );
    assert_eq!(
        &*table.lookup("PATCH", "/b/1").unwrap().route.label,
        "any-b"
    );
    assert_eq!(&*table.lookup("get", "/b/1").unwrap().route.label, "any-b");
    assert_eq!(
        &*table.lookup("DELETE", "/b/1").unwrap().route.label,
        "delete-b",
        "a named method wins over *"
    );
    assert_eq!(&*table.lookup("PATCH", "/b/1").unwrap().route.methods, "*");
    assert!(table.lookup("M-SEARCH", "/c").is_some());
    assert!(table.lookup("GET", "/c").is_none());
}

#[test]
fn catch_all_routes() {
    let yaml = r##"
routes:
  - { method: GET, path: "/files/{*rest}", permissions: [k], scope: any }
  - { method: GET, path: "/files/special", scope: none }
  - { method: GET, path: "/zones/{zone_id}/purge/{*rest}", permissions: [k], scope: { zone: zone_id } }
"##;
    let table = compile(yaml);
    assert_eq!(
        table.lookup("GET", "/files/a/b/c").unwrap().route.scope,
        Scope::Any
    );
    assert_eq!(
        table.lookup("GET", "/files/special").unwrap().route.scope,
        Scope::None,
        "static wins"
    );
    assert!(
        table.lookup("GET", "/files/").is_none(),
        "a catch-all needs at least one character"
    );
    let purge = table.lookup("GET", "/zones/Z1/purge/x/y").unwrap();
    assert_eq!(purge.resource_id, Some("Z1"));
    assert!(table.lookup("GET", "/zones/Z1/purge").is_none());
}

#[test]
fn lookups_need_the_exact_path() {
    let table = compile(&one("method: GET, path: \"/a/{id}/b\", scope: none"));
    assert!(table.lookup("GET", "/a/1/b").is_some());
    assert!(
        table.lookup("GET", "/a/1/b/").is_none(),
        "a trailing slash is another path"
    );
    assert!(table.lookup("GET", "/a/1").is_none());
    assert!(table.lookup("GET", "/a//b").is_none());
    assert!(
        table.lookup("GET", "/a/1/2/b").is_none(),
        "a parameter is one segment"
    );
    assert!(table.lookup("GET", "*").is_none());
    assert!(RouteTable::empty().lookup("GET", "/").is_none());
    assert!(RouteTable::empty().is_empty());
}

#[test]
fn empty_files_and_several_files() {
    let mut keys = KeyInterner::new();
    let files = [
        source("routes/empty.yaml", "routes: []\n"),
        source("routes/a.yaml", &one("method: GET, path: /a, scope: none")),
        source(
            "routes/b.json",
            r#"{"routes": [{"method": "GET", "path": "/b", "public": true}]}"#,
        ),
    ];
    let table = super::compile(&files, &mut keys).unwrap();
    assert_eq!(table.len(), 2);
    assert!(table.lookup("GET", "/b").unwrap().route.public);
}

#[test]
fn a_conflict_names_both_routes() {
    let yaml = r##"
routes:
  - { method: GET, path: "/a/{x}", scope: none }
  - { method: [POST, GET], path: "/a/{y}", scope: none }
  - { method: GET, path: "/b", scope: none }
  - { method: GET, path: "/b", scope: none }
"##;
    let errors = errors(yaml);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(errors[0].path, "routes[1].path");
    assert!(errors[0].message.contains("GET /a/{y}"), "{}", errors[0]);
    assert!(
        errors[0]
            .message
            .contains("routes[0] (/a/{x}) in routes/a.yaml"),
        "{}",
        errors[0]
    );
    assert_eq!(errors[0].line, Some(4), "{}", errors[0]);
    assert_eq!(errors[1].path, "routes[3].path");
    assert!(
        errors[1].message.contains("routes[2] (/b)"),
        "{}",
        errors[1]
    );
}

#[test]
fn a_conflict_across_files_names_both_files() {
    let files = [
        source(
            "routes/one.yaml",
            &one("method: GET, path: \"/x/{id}\", scope: none"),
        ),
        source(
            "routes/two.yaml",
            &one("method: GET, path: \"/x/{other}\", scope: none"),
        ),
    ];
    let errors = super::compile(&files, &mut KeyInterner::new()).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].file, Path::new("routes/two.yaml"));
    assert_eq!(errors[0].path, "routes[0].path");
    assert!(
        errors[0]
            .message
            .contains("routes[0] (/x/{id}) in routes/one.yaml"),
        "{}",
        errors[0]
    );
}

#[test]
fn different_methods_and_any_do_not_conflict() {
    let yaml = r##"
routes:
  - { method: GET, path: "/a/{x}", scope: none }
  - { method: POST, path: "/a/{y}", scope: none }
  - { method: "*", path: "/a/{z}", scope: none }
"##;
    assert_eq!(compile(yaml).len(), 3);
}

#[test]
fn every_error_of_every_file_is_reported() {
    let files = [
        source(
            "routes/one.yaml",
            "routes:\n  - { method: get, path: /a, scope: none }\n  - { method: GET, path: a, scope: none }\n",
        ),
        source(
            "routes/two.yaml",
            "routes:\n  - { method: GET, path: /b, scope: none, extra: 1 }\n",
        ),
        source(
            "routes/three.yaml",
            "routes:\n  - { method: GET, path: /c }\n",
        ),
    ];
    let errors = super::compile(&files, &mut KeyInterner::new()).unwrap_err();
    let places: Vec<(String, String, Option<u64>)> = errors
        .iter()
        .map(|e| (e.file.display().to_string(), e.path.clone(), e.line))
        .collect();
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert_eq!(
        places[0],
        ("routes/one.yaml".into(), "routes[0].method".into(), Some(2))
    );
    assert_eq!(
        places[1],
        ("routes/one.yaml".into(), "routes[1].path".into(), Some(3))
    );
    assert_eq!(places[2].0, "routes/two.yaml");
    assert!(errors[2].message.contains("extra"), "{}", errors[2]);
    assert_eq!(
        places[3],
        ("routes/three.yaml".into(), "routes[0]".into(), Some(2))
    );
}

#[test]
fn methods_are_checked() {
    assert_error(
        &one("method: get, path: /a, scope: none"),
        "routes[0].method",
        "case-sensitive",
    );
    assert_error(
        &one("method: [GET, post], path: /a, scope: none"),
        "routes[0].method[1]",
        "\"POST\"",
    );
    assert_error(
        &one("method: [], path: /a, scope: none"),
        "routes[0].method",
        "empty",
    );
    assert_error(
        &one("method: \"\", path: /a, scope: none"),
        "routes[0].method",
        "empty method",
    );
    assert_error(
        &one("method: [GET, GET], path: /a, scope: none"),
        "routes[0].method[1]",
        "twice",
    );
    assert_error(
        &one("method: [GET, \"*\"], path: /a, scope: none"),
        "routes[0].method",
        "alone",
    );
    assert_error(
        &one("method: \"GE T\", path: /a, scope: none"),
        "routes[0].method",
        "token",
    );
    assert_error(
        &one("method: \"G*\", path: /a, scope: none"),
        "routes[0].method",
        "token",
    );
    let missing = errors(&one("path: /a, scope: none"));
    assert!(missing[0].message.contains("method"), "{missing:#?}");
}

#[test]
fn paths_must_be_canonical_patterns() {
    for (path, needle) in [
        ("a/b", "must start with /"),
        ("\"\"", "must start with /"),
        ("http://x/a", "must start with /"),
        ("/a//b", "empty path segment"),
        ("/a/./b", "dot segment"),
        ("/a/../b", "dot segment"),
        ("/a/%2e%2E/b", "dot segment"),
        ("/a;b", "semicolon"),
        ("/a%2Fb", "encoded slash"),
        ("/a%5cb", "backslash"),
        ("/a%zz", "percent-encoding"),
        ("\"/a b\"", "space"),
        ("\"/a#b\"", "fragment"),
        ("/a?b", "query"),
        ("/caf\u{e9}", "non-ASCII"),
        ("/%7e", "not canonical"),
        ("/%3a", "not canonical"),
        ("/a|b", "not canonical"),
        ("\"/{{x}}\"", "literal brace"),
        ("\"/a}\"", "literal brace"),
        ("\"/{x\"", "without a closing"),
        ("\"/{}\"", "invalid parameter"),
        ("\"/{*}\"", "invalid parameter"),
        ("\"/{x}/{x}\"", "twice"),
        ("\"/{*rest}/a\"", "must end"),
        ("\"/{a}{b}\"", "invalid path pattern"),
    ] {
        assert_error(
            &one(&format!("method: GET, path: {path}, scope: none")),
            "routes[0].path",
            needle,
        );
    }
}

#[test]
fn permissions_are_checked() {
    assert_error(
        &one("method: GET, path: /a, permissions: [], scope: user"),
        "routes[0].permissions",
        "empty",
    );
    assert_error(
        &one("method: GET, path: /a, permissions: { any_of: [] }, scope: user"),
        "routes[0].permissions.any_of",
        "empty",
    );
    assert_error(
        &one("method: GET, path: /a, permissions: [a, \"b.*\"], scope: user"),
        "routes[0].permissions[1]",
        "literal",
    );
    assert_error(
        &one("method: GET, path: /a, permissions: [\"*\"], scope: user"),
        "routes[0].permissions[0]",
        "literal",
    );
    assert_error(
        &one("method: GET, path: /a, permissions: [\"\"], scope: user"),
        "routes[0].permissions[0]",
        "empty",
    );
    assert_error(
        &one("method: GET, path: /a, permissions: { all_of: [a, \"a b\"] }, scope: user"),
        "routes[0].permissions.all_of[1]",
        "whitespace",
    );
    let both = errors(&one(
        "method: GET, path: /a, permissions: { all_of: [a], any_of: [b] }, scope: user",
    ));
    assert!(both[0].message.contains("not both"), "{both:#?}");
    let unknown = errors(&one(
        "method: GET, path: /a, permissions: { one_of: [a] }, scope: user",
    ));
    assert!(unknown[0].message.contains("one_of"), "{unknown:#?}");
}

#[test]
fn scopes_are_checked() {
    assert_error(
        &one("method: GET, path: /a, permissions: [k]"),
        "routes[0]",
        "needs a scope",
    );
    assert_error(&one("method: GET, path: /a"), "routes[0]", "needs a scope");
    assert_error(
        &one("method: GET, path: /a, scope: user"),
        "routes[0]",
        "needs permissions",
    );
    assert_error(
        &one("method: GET, path: /a, scope: any"),
        "routes[0]",
        "needs permissions",
    );
    assert_error(
        &one("method: GET, path: \"/a/{zone_id}\", scope: { zone: zone_id }"),
        "routes[0]",
        "needs permissions",
    );
    assert_error(
        &one("method: GET, path: /a, permissions: [k], scope: none"),
        "routes[0].permissions",
        "no permissions",
    );
    assert_error(
        &one("method: GET, path: \"/a/{zone_id}\", permissions: [k], scope: { zone: zone }"),
        "routes[0].scope.zone",
        "not a parameter",
    );
    assert_error(
        &one("method: GET, path: \"/a/{id}\", permissions: [k], scope: { account: account_id }"),
        "routes[0].scope.account",
        "not a parameter",
    );
    assert_error(
        &one("method: GET, path: \"/a/{*rest}\", permissions: [k], scope: { account: rest }"),
        "routes[0].scope.account",
        "catch-all",
    );
    let unknown = errors(&one(
        "method: GET, path: /a, permissions: [k], scope: everyone",
    ));
    assert_eq!(unknown.len(), 1, "{unknown:#?}");
    assert!(unknown[0].message.contains("everyone"), "{unknown:#?}");
    let unknown_kind = errors(&one(
        "method: GET, path: \"/a/{x}\", permissions: [k], scope: { org: x }",
    ));
    assert!(unknown_kind[0].message.contains("org"), "{unknown_kind:#?}");
}

#[test]
fn public_routes_and_handlers_are_checked() {
    assert_error(
        &one("method: GET, path: /a, public: true, permissions: [k]"),
        "routes[0].permissions",
        "public",
    );
    assert_error(
        &one("method: GET, path: /a, public: true, scope: none"),
        "routes[0].scope",
        "public",
    );
    assert_error(
        &one("method: GET, path: /a, public: true, handler: verify_token"),
        "routes[0].handler",
        "cannot be public",
    );
    assert_eq!(
        compile(&one("method: GET, path: /a, public: false, scope: none")).len(),
        1
    );
    let unknown = errors(&one("method: GET, path: /a, scope: none, handler: echo"));
    assert!(unknown[0].message.contains("echo"), "{unknown:#?}");
}

#[test]
fn verify_routes_are_scoped_to_whose_tokens_they_answer_for() {
    for scope in ["none", "user", "{ account: a }"] {
        let table = compile(&one(&format!(
            "method: GET, path: \"/accounts/{{a}}/tokens/verify\", scope: {scope}, handler: verify_token"
        )));
        assert_eq!(table.len(), 1, "{scope}");
    }
    for scope in ["any", "{ zone: a }"] {
        assert_error(
            &one(&format!(
                "method: GET, path: \"/zones/{{a}}/verify\", scope: {scope}, handler: verify_token"
            )),
            "routes[0].scope",
            "verify_token answers for one token",
        );
    }
    assert_error(
        &one(
            "method: GET, path: \"/accounts/{a}/verify\", scope: { account: a }, permissions: [k], handler: verify_token",
        ),
        "routes[0].permissions",
        "checks no permission",
    );
}

#[test]
fn ids_are_checked() {
    assert_error(
        &one("method: GET, path: /a, scope: none, id: \"\""),
        "routes[0].id",
        "non-empty",
    );
    assert_error(
        &one("method: GET, path: /a, scope: none, id: \"a b\""),
        "routes[0].id",
        "spaces",
    );
}

#[test]
fn a_syntax_error_names_its_file() {
    let errors = errors("routes:\n  - { method: GET, path: /a\n");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].file, Path::new("routes/a.yaml"));
    assert!(errors[0].line.is_some(), "{:?}", errors[0]);
    let missing = errors_of("{}");
    assert!(missing[0].message.contains("routes"), "{missing:#?}");
}

fn errors_of(yaml: &str) -> Vec<ConfigError> {
    errors(yaml)
}

// --- agreement with a naive matcher ---------------------------------------------------------------------

/// One segment of a generated pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Static(&'static str),
    Param,
}

#[derive(Debug, Clone)]
struct NaiveRoute {
    segs: Vec<Seg>,
    any_method: bool,
    /// Which parameter (by position) is the scope, if any.
    scope: Option<usize>,
}

impl NaiveRoute {
    fn pattern(&self) -> String {
        let mut out = String::new();
        let mut params = 0;
        for seg in &self.segs {
            out.push('/');
            match seg {
                Seg::Static(text) => out.push_str(text),
                Seg::Param => {
                    out.push_str(&format!("{{p{params}}}"));
                    params += 1;
                }
            }
        }
        if out.is_empty() { "/".to_string() } else { out }
    }

    fn params(&self) -> usize {
        self.segs.iter().filter(|seg| **seg == Seg::Param).count()
    }

    /// The parameter values when `path` matches.
    fn matches<'p>(&self, path: &'p [&'p str]) -> Option<Vec<&'p str>> {
        if path.len() != self.segs.len() {
            return None;
        }
        let mut values = Vec::new();
        for (seg, part) in self.segs.iter().zip(path) {
            match seg {
                Seg::Static(text) if text == part => {}
                Seg::Static(_) => return None,
                Seg::Param if part.is_empty() => return None,
                Seg::Param => values.push(*part),
            }
        }
        Some(values)
    }
}

/// The naive answer: among the routes of the first router (the method's, then `*`) with any match, the
/// one that is static at the earliest segment where the candidates differ.
fn naive_lookup<'p>(
    routes: &[NaiveRoute],
    any_method: bool,
    path: &'p [&'p str],
) -> Option<(usize, Vec<&'p str>)> {
    let candidates: Vec<(usize, Vec<&str>)> = routes
        .iter()
        .enumerate()
        .filter(|(_, route)| route.any_method == any_method)
        .filter_map(|(index, route)| route.matches(path).map(|values| (index, values)))
        .collect();
    candidates.into_iter().max_by(|(a, _), (b, _)| {
        let rank = |index: usize| -> Vec<u8> {
            routes[index]
                .segs
                .iter()
                .map(|seg| if *seg == Seg::Param { 0 } else { 1 })
                .collect()
        };
        rank(*a).cmp(&rank(*b))
    })
}

fn naive_route() -> impl Strategy<Value = NaiveRoute> {
    let seg = prop_oneof![
        3 => prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(Seg::Static),
        1 => Just(Seg::Param),
    ];
    (
        proptest::collection::vec(seg, 0..4),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(|(segs, any_method, pick)| {
            let mut route = NaiveRoute {
                segs,
                any_method,
                scope: None,
            };
            let params = route.params();
            if params > 0 && pick % 2 == 0 {
                route.scope = Some(usize::from(pick) / 2 % params);
            }
            route
        })
}

/// Keeps the routes that matchit accepts together, in order (the rest would be compile errors).
fn without_conflicts(routes: Vec<NaiveRoute>) -> Vec<NaiveRoute> {
    let mut get = Router::new();
    let mut any = Router::new();
    routes
        .into_iter()
        .filter(|route| {
            let router = if route.any_method { &mut any } else { &mut get };
            router.insert(route.pattern(), ()).is_ok()
        })
        .collect()
}

fn table_yaml(routes: &[NaiveRoute]) -> String {
    if routes.is_empty() {
        return "routes: []\n".to_string();
    }
    let mut yaml = String::from("routes:\n");
    for (index, route) in routes.iter().enumerate() {
        let method = if route.any_method { "\"*\"" } else { "GET" };
        let scope = match route.scope {
            Some(position) => format!("{{ zone: p{position} }}, permissions: [k]"),
            None => "none".to_string(),
        };
        yaml.push_str(&format!(
            "  - {{ id: r{index}, method: {method}, path: \"{}\", scope: {scope} }}\n",
            route.pattern()
        ));
    }
    yaml
}

fn request_path() -> impl Strategy<Value = Vec<&'static str>> {
    proptest::collection::vec(
        prop_oneof![Just("a"), Just("b"), Just("c"), Just("d"), Just("")],
        0..5,
    )
}

proptest! {
    #[test]
    fn lookup_agrees_with_a_naive_matcher(
        routes in proptest::collection::vec(naive_route(), 0..12),
        paths in proptest::collection::vec(request_path(), 1..16),
        method in prop_oneof![Just("GET"), Just("POST")],
    ) {
        let routes = without_conflicts(routes);
        let table = compile(&table_yaml(&routes));
        prop_assert_eq!(table.len(), routes.len());
        for parts in &paths {
            let path = format!("/{}", parts.join("/"));
            let segments: Vec<&str> = if path == "/" { Vec::new() } else { parts.clone() };
            let expected = if method == "GET" { naive_lookup(&routes, false, &segments) } else { None }
                .or_else(|| naive_lookup(&routes, true, &segments));
            let actual = table.lookup(method, &path);
            match (expected, actual) {
                (None, None) => {}
                (Some((index, values)), Some(matched)) => {
                    prop_assert_eq!(&*matched.route.label, format!("r{index}"), "{}", path);
                    let scope_value = routes[index].scope.map(|position| values[position]);
                    prop_assert_eq!(matched.resource_id, scope_value, "{}", path);
                }
                (expected, actual) => {
                    prop_assert!(false, "{} {}: naive {:?}, table {:?}", method, path, expected, actual.map(|m| m.route.label.clone()));
                }
            }
        }
    }
}

#[test]
fn principals_restrict_the_kinds_of_credential_a_route_accepts() {
    let table = compile(
        r##"
routes:
  - method: GET
    path: /client/v4/accounts
    scope: none
    principals: [user_token, api_key]
    principal_refusal: { status: 400, code: 1001, message: "List accounts endpoint does not support account owned tokens." }
  - method: GET
    path: /client/v4/zones/{zone_id}/pagerules
    permissions: ["#zone:read"]
    scope: { zone: zone_id }
    principals: [account_token]
  - method: GET
    path: /client/v4/zones
    scope: none
"##,
    );
    let accounts = table.lookup("GET", "/client/v4/accounts").unwrap().route;
    assert!(accounts.principals.accepts(CredentialKind::UserToken));
    assert!(accounts.principals.accepts(CredentialKind::ApiKey));
    assert!(!accounts.principals.accepts(CredentialKind::AccountToken));
    assert_eq!(accounts.principals.to_string(), "user_token, api_key");
    assert_eq!(
        accounts.principal_refusal,
        Some(RouteRefusal {
            status: 400,
            code: 1001,
            message: "List accounts endpoint does not support account owned tokens.".into(),
        })
    );
    let pagerules = table
        .lookup("GET", "/client/v4/zones/z1/pagerules")
        .unwrap()
        .route;
    assert_eq!(
        pagerules.principals,
        AcceptedCredentials::of([CredentialKind::AccountToken])
    );
    assert_eq!(pagerules.principal_refusal, None);
    let zones = table.lookup("GET", "/client/v4/zones").unwrap().route;
    assert!(zones.principals.is_all(), "absent means every kind");
}

#[test]
fn principals_are_checked() {
    assert_error(
        &one("method: GET, path: /a, scope: none, principals: []"),
        "routes[0].principals",
        "admits no credential",
    );
    assert_error(
        &one("method: GET, path: /a, scope: none, principals: [api_key, api_key]"),
        "routes[0].principals[1]",
        "listed twice",
    );
    assert_error(
        &one("method: GET, path: /a, public: true, principals: [api_key]"),
        "routes[0].principals",
        "public",
    );
    assert_error(
        &one(
            "method: GET, path: /a, scope: none, principal_refusal: { status: 400, code: 1, message: m }",
        ),
        "routes[0].principal_refusal",
        "give principals too",
    );
    assert_error(
        &one(
            "method: GET, path: /a, scope: none, principals: [api_key], principal_refusal: { status: 200, code: 1, message: m }",
        ),
        "routes[0].principal_refusal.status",
        "400-499",
    );
    assert_error(
        &one(
            "method: GET, path: /a, scope: none, principals: [api_key], principal_refusal: { status: 400, code: 1, message: \"\" }",
        ),
        "routes[0].principal_refusal.message",
        "non-empty",
    );
    let unknown = errors(&one(
        "method: GET, path: /a, scope: none, principals: [service_key]",
    ));
    assert!(unknown[0].message.contains("service_key"), "{unknown:#?}");
    let extra = errors(&one(
        "method: GET, path: /a, scope: none, principals: [api_key], principal_refusal: { status: 400, code: 1, message: m, why: x }",
    ));
    assert!(extra[0].message.contains("why"), "{extra:#?}");
}

const KV_ROUTES: &str = r##"
routes:
  - method: [GET, PUT]
    path: /client/v4/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/values/{key_name}
    permissions: [com.cloudflare.edge.storage.kv.key.read]
    scope: { account: account_id }
    opaque: [key_name]
  - method: GET
    path: /client/v4/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/values/{key_name}/meta
    permissions: [com.cloudflare.edge.storage.kv.key.read]
    scope: { account: account_id }
    opaque: [key_name]
  - method: GET
    path: /client/v4/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/keys
    permissions: [com.cloudflare.edge.storage.kv.key.list]
    scope: { account: account_id }
  - method: GET
    path: /client/v4/accounts/{account_id}/things/{thing}
    permissions: [k]
    scope: { account: account_id }
"##;

/// Routes a request target as the pipeline does: `canonicalize_request`, then `route_request`; the route's
/// label, the resource id and the path that would be forwarded.
fn route_request(
    table: &RouteTable,
    method: &str,
    target: &str,
) -> Result<Option<(String, Option<String>, String)>, TargetRejection> {
    let mut canonical = target::canonicalize_request(method, target)?;
    let found = table
        .route_request(method, &mut canonical, target)?
        .map(|found| {
            (
                found.route.label.to_string(),
                found.resource_id.map(str::to_string),
            )
        });
    Ok(found.map(|(label, resource)| (label, resource, canonical.path_and_query())))
}

#[test]
fn opaque_parameters_compile_to_their_segments() {
    let table = compile(KV_ROUTES);
    let route = table
        .lookup(
            "GET",
            "/client/v4/accounts/a/storage/kv/namespaces/n/values/k",
        )
        .unwrap()
        .route;
    assert_eq!(
        &*route.opaque,
        &[OpaqueParam {
            name: "key_name".into(),
            segment: 10,
        }]
    );
    let base = "method: GET, permissions: [k], scope: { account: a }";
    assert_error(
        &one(&format!("{base}, path: \"/x/{{a}}/{{k}}\", opaque: [v]")),
        "routes[0].opaque[0]",
        "not a parameter",
    );
    assert_error(
        &one(&format!("{base}, path: \"/x/{{a}}/{{*k}}\", opaque: [k]")),
        "routes[0].opaque[0]",
        "catch-all",
    );
    assert_error(
        &one(&format!(
            "{base}, path: \"/x/{{a}}/{{k}}.json\", opaque: [k]"
        )),
        "routes[0].opaque[0]",
        "whole segment",
    );
    assert_error(
        &one(&format!("{base}, path: \"/x/{{a}}/{{k}}\", opaque: [a]")),
        "routes[0].opaque[0]",
        "never a resource id",
    );
    assert_error(
        &one(&format!("{base}, path: \"/x/{{a}}/{{k}}\", opaque: [k, k]")),
        "routes[0].opaque[1]",
        "listed twice",
    );
}

#[test]
fn an_encoded_slash_passes_only_in_an_opaque_parameter_as_received() {
    let table = compile(KV_ROUTES);
    let kv = "/client/v4/accounts/a1/storage/kv/namespaces/n1";
    // Admitted in the opaque parameter, byte for byte, whatever the case of the hex or other encodings.
    for key in [
        "images%2Fcat.png",
        "a%2fb",
        "%61%2F%62",
        "%2F",
        "x%2F%2Fy",
        "%61b",
    ] {
        let target = format!("{kv}/values/{key}?q=1");
        assert_eq!(
            route_request(&table, "GET", &target),
            Ok(Some((
                format!("{kv}/values/{{key_name}}").replace(
                    kv,
                    "/client/v4/accounts/{account_id}/storage/kv/namespaces/{namespace_id}"
                ),
                Some("a1".to_string()),
                target.clone()
            ))),
            "{key}"
        );
    }
    assert_eq!(
        route_request(&table, "GET", &format!("{kv}/values/a%2Fb/meta"))
            .unwrap()
            .map(|(_, resource, path)| (resource, path)),
        Some((Some("a1".to_string()), format!("{kv}/values/a%2Fb/meta")))
    );
    // Refused everywhere else: another parameter, a static segment, the scope's id, a path no route has,
    // a method the route does not have.
    for (method, target) in [
        ("GET", "/client/v4/accounts/a1/things/x%2Fy".to_string()),
        (
            "GET",
            "/client/v4/accounts/a1%2Fa2/storage/kv/namespaces/n1/keys".to_string(),
        ),
        ("GET", format!("{kv}%2Fvalues/k")),
        (
            "GET",
            "/client/v4/accounts/a1/storage/kv/namespaces/n%2F1/values/k".to_string(),
        ),
        ("GET", format!("{kv}/values/a%2Fb/extra")),
        ("GET", format!("{kv}/keys%2Fx")),
        ("DELETE", format!("{kv}/values/a%2Fb")),
        ("GET", "/nowhere/a%2Fb".to_string()),
    ] {
        assert_eq!(
            route_request(&table, method, &target),
            Err(TargetRejection::EncodedSlash),
            "{method} {target}"
        );
    }
    // An opaque value cannot smuggle a dot segment for an upstream that decodes `%2F` first.
    assert_eq!(
        route_request(&table, "GET", &format!("{kv}/values/..%2F..%2Fkeys")),
        Err(TargetRejection::DotSegment)
    );
    // Without an encoded slash nothing changes for other routes: canonical, and no route is no route.
    assert_eq!(
        route_request(&table, "GET", "/client/v4/accounts/a1/things/%78")
            .unwrap()
            .map(|(_, _, path)| path),
        Some("/client/v4/accounts/a1/things/x".to_string())
    );
    assert_eq!(route_request(&table, "GET", "/nowhere"), Ok(None));
}

#[test]
fn child_scopes_name_their_parent_and_their_name_parameters() {
    let table = compile(&one(
        "method: GET, path: \"/a/{account_id}/b/{bucket_name}\", permissions: [k], scope: { account: account_id, r2_bucket: bucket_name }",
    ));
    let found = table.lookup("GET", "/a/acc1/b/photos").unwrap();
    assert_eq!(found.resource_id, Some("photos"));
    assert_eq!(found.parent_id, Some("acc1"));
    assert!(
        matches!(&found.route.scope, crate::routes::Scope::Child { kind, .. } if &**kind == "r2_bucket")
    );
    assert_error(
        &one(
            "method: GET, path: \"/a/{account_id}/b/{name}\", permissions: [k], scope: { account: account_id, r2_bucket: bucket_name }",
        ),
        "routes[0].scope.r2_bucket",
        "not a parameter",
    );
    assert_error(
        &one(
            "method: GET, path: \"/a/{account_id}/b/{*rest}\", permissions: [k], scope: { account: account_id, r2_bucket: rest }",
        ),
        "routes[0].scope.r2_bucket",
        "catch-all",
    );
    let both = errors(&one(
        "method: GET, path: \"/a/{x}/{y}\", permissions: [k], scope: { account: x, zone: y }",
    ));
    assert!(both[0].message.contains("not both"), "{both:#?}");
}
