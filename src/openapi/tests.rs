//! Unit tests of the OpenAPI importer: scope inference, the all-of/any-of rule, path conversion, overrides,
//! overlays and the rendered YAML (which must load as a route table).

use serde_json::json;

use super::render::{Provenance, render};
use super::*;
use crate::config::SourceFile;
use crate::config::compile::routes;
use crate::policy::KeyInterner;
use crate::routes::{Requirement, Scope};

fn spec(document: Value) -> Vec<Spec> {
    vec![Spec {
        label: "test.json".to_string(),
        document,
    }]
}

fn options() -> ImportOptions {
    ImportOptions {
        prefix: "/client/v4".to_string(),
        catalog: None,
    }
}

#[test]
fn scope_is_inferred_whatever_the_parameter_is_called() {
    for name in ["account_id", "account_identifier", "accountId"] {
        assert_eq!(
            infer_scope("GET", &format!("/accounts/{{{name}}}/x")),
            InferredScope::Account(name.to_string())
        );
    }
    for name in ["zone_id", "zone_identifier", "zone", "identifier"] {
        assert_eq!(
            infer_scope("DELETE", &format!("/zones/{{{name}}}")),
            InferredScope::Zone(name.to_string())
        );
    }
    assert_eq!(infer_scope("GET", "/user"), InferredScope::User);
    assert_eq!(infer_scope("PUT", "/user/tokens/{id}"), InferredScope::User);
    assert_eq!(infer_scope("GET", "/zones"), InferredScope::Collection);
    assert_eq!(infer_scope("GET", "/accounts"), InferredScope::Collection);
    assert!(matches!(
        infer_scope("POST", "/zones"),
        InferredScope::Unknown(_)
    ));
    assert!(matches!(
        infer_scope("POST", "/accounts/move"),
        InferredScope::Unknown(_)
    ));
    assert!(matches!(
        infer_scope("GET", "/radar/http/summary"),
        InferredScope::Unknown(_)
    ));
    // `/users` is not `/user`.
    assert!(matches!(
        infer_scope("GET", "/users/{id}"),
        InferredScope::Unknown(_)
    ));
}

#[test]
fn several_keys_are_any_of_on_reads_and_all_of_on_writes() {
    let keys = |list: &[&str]| list.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    assert_eq!(
        combine("GET", keys(&["#dex:read", "#teams:report"])),
        RawPermissions::AnyOf(keys(&["#dex:read", "#teams:report"]))
    );
    assert_eq!(
        combine("PUT", keys(&["#billing:read", "#billing:edit"])),
        RawPermissions::all_of(keys(&["#billing:read", "#billing:edit"]))
    );
    // Keys of different resources on a write are still all required: fail closed.
    assert_eq!(
        combine("POST", keys(&["#dns_records:edit", "#organization:read"])),
        RawPermissions::all_of(keys(&["#dns_records:edit", "#organization:read"]))
    );
    assert_eq!(
        combine("GET", keys(&["#zone:read"])),
        RawPermissions::all_of(keys(&["#zone:read"]))
    );
}

#[test]
fn paths_become_matchit_patterns() {
    assert_eq!(
        matchit_path("/client/v4", "/zones/{zone_id}/dns_records").as_deref(),
        Ok("/client/v4/zones/{zone_id}/dns_records")
    );
    assert_eq!(
        matchit_path(
            "/client/v4",
            "/accounts/{account_id}/address_maps/{id}/accounts/{account_id}"
        )
        .as_deref(),
        Ok("/client/v4/accounts/{account_id}/address_maps/{id}/accounts/{account_id_2}")
    );
    assert!(matchit_path("", "/a/{x y}").is_err());
    assert!(matchit_path("", "/a/{x").is_err());
    assert!(matchit_path("", "/a/x}").is_err());
}

#[test]
fn operations_import_with_their_reasons() {
    let document = json!({
        "security": [{"api_token": []}],
        "paths": {
            "/zones/{zone_identifier}/settings": {
                "get": {"operationId": "settings-get", "x-cfPermissionsRequired": {"enum": ["#zone_settings:read"]}},
                "patch": {"x-cfPermissionsRequired": {"enum": ["#zone_settings:read", "#zone_settings:edit"]}}
            },
            "/accounts/{accountId}/dex": {
                "get": {"x-cfPermissionsRequired": {"enum": ["#dex:read", "#teams:report"]}}
            },
            "/radar/x": {"get": {"x-cfPermissionsRequired": {"enum": ["com.cloudflare.api.user.read"]}}},
            "/memberships": {"get": {"operationId": "m"}},
            "/certificates": {"get": {"security": [{"user_service_key": []}]}},
            "/ips": {"get": {"security": [{}]}},
            "/things": {"get": {"x-cfPermissionsRequired": {"enum": ["#thing:read"]}}},
            "/user/tokens/verify": {"get": {"x-permgate-permissions": {"scope": "none", "handler": "verify_token"}}},
            "/user/tokens/verify-own": {"get": {"x-permgate-permissions": {"scope": "user", "handler": "verify_token"}}},
            "/accounts/{account_id}/tokens/verify": {"get": {"x-permgate-permissions": {"scope": {"account": "account_id"}, "handler": "verify_token"}}},
            "/accounts/{account_id}/tokens/verify-inferred": {"get": {"x-permgate-permissions": {"handler": "verify_token"}}},
            "/zones": {"get": {"x-permgate-permissions": {"scope": "none"}}}
        }
    });
    let imported = import(&spec(document), &options());
    let find = |method: &str, path: &str| {
        imported
            .routes
            .iter()
            .find(|route| route.method == RawMethods::One(method.to_string()) && route.path == path)
            .cloned()
    };
    let settings = find("GET", "/client/v4/zones/{zone_identifier}/settings").unwrap();
    assert_eq!(settings.id.as_deref(), Some("settings-get"));
    assert_eq!(
        settings.scope,
        Some(RawScope::Zone("zone_identifier".to_string()))
    );
    let patch = find("PATCH", "/client/v4/zones/{zone_identifier}/settings").unwrap();
    assert!(matches!(patch.permissions, Some(RawPermissions::AllOf(ref keys)) if keys.len() == 2));
    let dex = find("GET", "/client/v4/accounts/{accountId}/dex").unwrap();
    assert!(matches!(dex.permissions, Some(RawPermissions::AnyOf(_))));
    assert_eq!(dex.scope, Some(RawScope::Account("accountId".to_string())));
    assert_eq!(
        find("GET", "/client/v4/radar/x").unwrap().scope,
        Some(RawScope::User)
    );
    let ips = find("GET", "/client/v4/ips").unwrap();
    assert!(ips.public && ips.scope.is_none() && ips.permissions.is_none());
    let verify = find("GET", "/client/v4/user/tokens/verify").unwrap();
    assert_eq!(verify.scope, Some(RawScope::None));
    assert_eq!(verify.handler, Some(Handler::VerifyToken));
    // A verify route takes no keys: its scope says whose tokens it answers for (given, or from the path).
    for (path, scope) in [
        ("/client/v4/user/tokens/verify-own", RawScope::User),
        (
            "/client/v4/accounts/{account_id}/tokens/verify",
            RawScope::Account("account_id".to_string()),
        ),
        (
            "/client/v4/accounts/{account_id}/tokens/verify-inferred",
            RawScope::Account("account_id".to_string()),
        ),
    ] {
        let route = find("GET", path).unwrap_or_else(|| panic!("{path} not imported"));
        assert_eq!(route.scope, Some(scope), "{path}");
        assert_eq!(route.permissions, None, "{path}");
        assert_eq!(route.handler, Some(Handler::VerifyToken), "{path}");
    }
    assert_eq!(
        find("GET", "/client/v4/zones").unwrap().scope,
        Some(RawScope::None)
    );

    let reason = |path: &str| {
        imported
            .skipped
            .iter()
            .find(|skipped| skipped.path == path)
            .map(|skipped| skipped.reason.clone())
    };
    assert_eq!(reason("/memberships"), Some(SkipReason::NoAnnotation));
    assert_eq!(reason("/certificates"), Some(SkipReason::ServiceKeyOnly));
    assert!(matches!(reason("/things"), Some(SkipReason::NoScope(_))));
    assert_eq!(imported.routes.len() + imported.skipped.len(), 13);
}

#[test]
fn the_extension_overrides_keys_scope_and_combination() {
    let document = json!({
        "paths": {
            "/zones/{zone_id}/a": {"post": {
                "x-cfPermissionsRequired": {"enum": ["#a:read", "#a:edit"]},
                "x-permgate-permissions": {"any_of": ["#a:read", "#a:edit"]}
            }},
            "/zones/{zone_id}/b": {"get": {"x-permgate-permissions": ["#b:read", "#b:list"]}},
            "/things/{id}": {"get": {"x-permgate-permissions": {"all_of": ["#t:read"], "scope": {"account": "id"}}}},
            "/bad/{id}": {"get": {"x-permgate-permissions": {"any_of": []}}},
            "/bad2": {"get": {"x-permgate-permissions": {"public": true, "scope": "user"}}},
            "/bad3": {"get": {"x-permgate-permissions": {"anyof": ["x"]}}},
            "/pub": {"get": {"x-permgate-permissions": {"public": true}}}
        }
    });
    let imported = import(&spec(document), &options());
    assert_eq!(imported.routes.len(), 4, "{:?}", imported.skipped);
    let route = |path: &str| {
        imported
            .routes
            .iter()
            .find(|route| route.path == format!("/client/v4{path}"))
            .unwrap()
    };
    // The extension wins over x-cfPermissionsRequired and over the write rule.
    assert!(matches!(
        route("/zones/{zone_id}/a").permissions,
        Some(RawPermissions::AnyOf(_))
    ));
    assert!(
        matches!(route("/zones/{zone_id}/b").permissions, Some(RawPermissions::AllOf(ref keys)) if keys.len() == 2)
    );
    assert_eq!(
        route("/things/{id}").scope,
        Some(RawScope::Account("id".to_string()))
    );
    assert!(route("/pub").public);
    assert_eq!(imported.skipped.len(), 3);
    assert!(
        imported
            .skipped
            .iter()
            .all(|skipped| matches!(skipped.reason, SkipReason::InvalidAnnotation(_)))
    );
}

#[test]
fn token_groups_resolve_through_the_catalog_as_any_of() {
    let document = json!({
        "paths": {
            "/zones/{zone_id}/dns_records": {
                "get": {"x-api-token-group": ["DNS Read", "DNS Write"]},
                "post": {"x-api-token-group": ["DNS Write"], "x-cfPermissionsRequired": {"enum": ["#dns_records:edit"]}}
            },
            "/zones/{zone_id}": {"patch": {"x-api-token-group": ["Nope"]}}
        }
    });
    let without = import(&spec(document.clone()), &options());
    assert_eq!(without.routes.len(), 1);
    assert!(
        without
            .skipped
            .iter()
            .all(|skipped| matches!(skipped.reason, SkipReason::UnresolvedGroups(_)))
    );

    let catalog = Catalog::from_groups([
        ("DNS Read", vec!["#dns_records:read".to_string()]),
        (
            "DNS Write",
            vec![
                "#dns_records:read".to_string(),
                "#dns_records:*".to_string(),
            ],
        ),
    ]);
    let imported = import(
        &spec(document),
        &ImportOptions {
            catalog: Some(catalog),
            ..options()
        },
    );
    let list = imported
        .routes
        .iter()
        .find(|route| route.method == RawMethods::One("GET".to_string()))
        .unwrap();
    // Patterns are left out: a route requires literal keys.
    assert_eq!(
        list.permissions,
        Some(RawPermissions::all_of(vec![
            "#dns_records:read".to_string()
        ]))
    );
    let create = imported
        .routes
        .iter()
        .find(|route| route.method == RawMethods::One("POST".to_string()))
        .unwrap();
    assert_eq!(
        create.permissions,
        Some(RawPermissions::all_of(vec![
            "#dns_records:edit".to_string()
        ]))
    );
    // DNS Write grants #dns_records:edit through its pattern: no note. The unknown group is a note and a skip.
    assert!(
        imported
            .notes
            .iter()
            .all(|note| !note.contains("does not grant"))
    );
    assert!(imported.notes.iter().any(|note| note.contains("Nope")));
}

#[test]
fn a_later_spec_overlays_an_operation_whatever_its_parameter_names() {
    let base = json!({"paths": {"/accounts/{account_id}": {"get": {"operationId": "a", "x-cfPermissionsRequired": {"enum": ["#organization:read"]}}}}});
    let overlay = json!({"paths": {
        "/accounts/{accountId}": {"get": {"x-permgate-permissions": {"any_of": ["#organization:read", "#x:read"]}}},
        "/accounts/{account_id}/new": {"post": {"x-cfPermissionsRequired": {"enum": ["#new:edit"]}}}
    }});
    let specs = vec![
        Spec {
            label: "a".to_string(),
            document: base,
        },
        Spec {
            label: "b".to_string(),
            document: overlay,
        },
    ];
    let imported = import(&specs, &options());
    assert_eq!(imported.routes.len(), 2);
    let get = &imported.routes[0];
    assert_eq!(get.id.as_deref(), Some("a"));
    assert_eq!(get.path, "/client/v4/accounts/{accountId}");
    assert!(matches!(get.permissions, Some(RawPermissions::AnyOf(_))));
}

/// Whether a canonical request can match a path is asked of the loader's route compiler, not re-checked here:
/// a path no canonical request can reach is skipped with the compiler's own message.
#[test]
fn paths_no_canonical_request_matches_are_refused_by_the_route_compiler() {
    let document = json!({"paths": {
        "/zones/{zone_id}//x": {"get": {"x-permgate-permissions": ["#a:read"]}},
        "/zones/{zone_id}/./x": {"get": {"x-permgate-permissions": ["#a:read"]}},
        "/zones/{zone_id}/%7ex": {"get": {"x-permgate-permissions": ["#a:read"]}},
        "/zones/{zone_id}/y": {"get": {"x-permgate-permissions": ["#a:read"]}}
    }});
    let imported = import(&spec(document), &options());
    assert_eq!(imported.routes.len(), 1, "{:?}", imported.routes);
    assert_eq!(imported.routes[0].path, "/client/v4/zones/{zone_id}/y");
    assert_eq!(imported.skipped.len(), 3);
    for skipped in &imported.skipped {
        assert!(
            matches!(&skipped.reason, SkipReason::Rejected(why) if why.contains("not canonical") || why.contains("can never match a request")),
            "{skipped:?}"
        );
    }
}

#[test]
fn conflicting_paths_are_skipped_naming_the_earlier_route() {
    let document = json!({"paths": {
        "/zones/{zone_id}/x/{*rest}": {"get": {"x-permgate-permissions": ["#a:read"]}},
        "/zones/{zone_id}/x/{name}.json": {"get": {"x-permgate-permissions": ["#a:read"]}}
    }});
    let imported = import(&spec(document), &options());
    assert_eq!(imported.routes.len() + imported.skipped.len(), 2);
    assert!(imported.skipped.iter().all(|skipped| matches!(
        skipped.reason,
        SkipReason::Conflict(_) | SkipReason::InvalidPath(_)
    )));
}

#[test]
fn the_rendered_file_loads_as_a_route_table() {
    let document = json!({
        "paths": {
            "/zones/{zone_id}": {"get": {"operationId": "zone get", "x-cfPermissionsRequired": {"enum": ["#zone:read", "#x:read"]}}},
            "/accounts/{account_id}/a/{id}/accounts/{account_id}": {"put": {"x-cfPermissionsRequired": {"enum": ["#a:read", "#a:edit"]}}},
            "/user": {"get": {"x-cfPermissionsRequired": {"enum": ["com.cloudflare.api.user.read"]}}},
            "/user/tokens/verify": {"get": {"x-permgate-permissions": {"scope": "none", "handler": "verify_token"}}},
            "/zones": {"get": {"x-cfPermissionsRequired": {"enum": ["#zone:read"]}}},
            "/ips": {"get": {"security": []}}
        }
    });
    let imported = import(&spec(document), &options());
    assert!(imported.skipped.is_empty(), "{:?}", imported.skipped);
    let text = render(
        &imported,
        &Provenance {
            specs: vec!["test.json".to_string()],
            prefix: "/client/v4".to_string(),
            catalog: None,
        },
    )
    .expect("renders");
    let file = SourceFile::from_text("routes.yaml", text.clone());
    let table = routes::compile(&[file], &mut KeyInterner::new()).unwrap();
    assert_eq!(table.len(), 6, "{text}");
    let zone = table.lookup("GET", "/client/v4/zones/z1").unwrap();
    assert_eq!(zone.resource_id, Some("z1"));
    assert_eq!(&*zone.route.label, "zone-get");
    assert!(matches!(zone.route.requirement, Requirement::AnyOf(_)));
    let put = table
        .lookup("PUT", "/client/v4/accounts/a1/a/i/accounts/a2")
        .unwrap();
    assert_eq!(put.resource_id, Some("a1"));
    assert!(matches!(put.route.requirement, Requirement::AllOf(ref keys) if keys.len() == 2));
    assert_eq!(
        table.lookup("GET", "/client/v4/zones").unwrap().route.scope,
        Scope::Any
    );
    assert!(table.lookup("GET", "/client/v4/ips").unwrap().route.public);
    assert!(
        table
            .lookup("GET", "/client/v4/user/tokens/verify")
            .unwrap()
            .route
            .handler
            .is_some()
    );
}

#[test]
fn a_write_never_passes_on_keys_that_do_not_say_they_write() {
    let document = json!({
        "paths": {
            "/accounts/{account_id}/ai-gateway/gateways": {
                "get": {"x-cfPermissionsRequired": {"enum": ["com.cloudflare.api.account.aig"]}},
                "post": {"x-cfPermissionsRequired": {"enum": ["com.cloudflare.api.account.aig"]}}
            },
            "/zones/{zone_id}/settings/{setting_id}": {
                "patch": {"x-cfPermissionsRequired": {"enum": ["#zone_settings:read"]}}
            },
            "/zones/{zone_id}/ssl/analyze": {
                "post": {"x-cfPermissionsRequired": {"enum": ["#ssl:read"]}}
            },
            "/accounts/{account_id}/workers/scripts/{script_name}/tails": {
                "post": {"x-cfPermissionsRequired": {"enum": [
                    "com.cloudflare.edge.worker.script.read", "com.cloudflare.edge.worker.tail.create"]}}
            },
            "/accounts/{account_id}/workers/scripts/{script_name}/tails/{id}": {
                "delete": {"x-cfPermissionsRequired": {"enum": [
                    "com.cloudflare.edge.worker.script.read", "com.cloudflare.edge.worker.tail.create"]}}
            },
            "/accounts/{account_id}/billing": {
                "put": {"x-cfPermissionsRequired": {"enum": ["#billing:read", "#billing:edit"]}}
            }
        }
    });
    let imported = import(&spec(document), &options());
    assert!(imported.skipped.is_empty(), "{:?}", imported.skipped);
    let keys = |method: &str, path: &str| {
        imported
            .routes
            .iter()
            .find(|route| {
                route.method == RawMethods::One(method.to_string())
                    && route.path == format!("/client/v4{path}")
            })
            .and_then(|route| route.permissions.clone())
            .unwrap()
    };
    let all_of =
        |list: &[&str]| RawPermissions::all_of(list.iter().map(|k| k.to_string()).collect());
    // The action-less key reads as the spec says, and writes only with its write flavour.
    assert_eq!(
        keys("GET", "/accounts/{account_id}/ai-gateway/gateways"),
        all_of(&["com.cloudflare.api.account.aig"])
    );
    assert_eq!(
        keys("POST", "/accounts/{account_id}/ai-gateway/gateways"),
        all_of(&[
            "com.cloudflare.api.account.aig",
            "com.cloudflare.api.account.aig.edit"
        ])
    );
    // Only a read key on a PATCH: the write flavour too (a PATCH changes state whatever it is annotated with).
    assert_eq!(
        keys("PATCH", "/zones/{zone_id}/settings/{setting_id}"),
        all_of(&["#zone_settings:read", "#zone_settings:edit"])
    );
    // A POST whose keys all read is kept as the spec says (opening a tail counts as a read).
    assert_eq!(
        keys("POST", "/zones/{zone_id}/ssl/analyze"),
        all_of(&["#ssl:read"])
    );
    assert_eq!(
        keys(
            "POST",
            "/accounts/{account_id}/workers/scripts/{script_name}/tails"
        ),
        all_of(&[
            "com.cloudflare.edge.worker.script.read",
            "com.cloudflare.edge.worker.tail.create"
        ])
    );
    assert_eq!(
        keys(
            "DELETE",
            "/accounts/{account_id}/workers/scripts/{script_name}/tails/{id}"
        ),
        all_of(&[
            "com.cloudflare.edge.worker.script.read",
            "com.cloudflare.edge.worker.tail.create",
            "com.cloudflare.edge.worker.script.edit",
            "com.cloudflare.edge.worker.tail.edit"
        ])
    );
    // A write key present: unchanged.
    assert_eq!(
        keys("PUT", "/accounts/{account_id}/billing"),
        all_of(&["#billing:read", "#billing:edit"])
    );
    assert!(
        imported
            .notes
            .iter()
            .any(|note| note.contains("POST /zones/{zone_id}/ssl/analyze")
                && note.contains("only read keys"))
    );
}

#[test]
fn token_groups_on_a_write_resolve_to_their_write_keys_only() {
    let catalog = Catalog::from_groups([
        ("DNS Read", vec!["#dns_records:read".to_string()]),
        (
            "DNS Write",
            vec![
                "#dns_records:read".to_string(),
                "#dns_records:edit".to_string(),
            ],
        ),
        (
            "AI Gateway Write",
            vec![
                "com.cloudflare.api.account.aig".to_string(),
                "#ai_gateway:edit".to_string(),
            ],
        ),
        (
            "AI Gateway Read",
            vec!["com.cloudflare.api.account.aig".to_string()],
        ),
    ]);
    let document = json!({
        "paths": {
            "/zones/{zone_id}/dns_records": {
                "get": {"x-api-token-group": ["DNS Read", "DNS Write"]},
                "post": {"x-api-token-group": ["DNS Write", "DNS Read"]}
            },
            "/zones/{zone_id}/dns_records/{id}": {
                "delete": {"x-api-token-group": ["DNS Read"]}
            },
            "/accounts/{account_id}/ai-gateway/gateways": {
                "post": {"x-api-token-group": ["AI Gateway Write"],
                         "x-cfPermissionsRequired": {"enum": ["com.cloudflare.api.account.aig"]}}
            }
        }
    });
    let imported = import(
        &spec(document),
        &ImportOptions {
            catalog: Some(catalog),
            ..options()
        },
    );
    let keys = |method: &str, path: &str| {
        imported
            .routes
            .iter()
            .find(|route| {
                route.method == RawMethods::One(method.to_string())
                    && route.path == format!("/client/v4{path}")
            })
            .map(|route| route.permissions.clone())
    };
    // A read: any key of the listed groups.
    assert_eq!(
        keys("GET", "/zones/{zone_id}/dns_records"),
        Some(Some(RawPermissions::AnyOf(vec![
            "#dns_records:read".to_string(),
            "#dns_records:edit".to_string()
        ])))
    );
    // A write: DNS Write's write key only, not the #dns_records:read it shares with DNS Read.
    assert_eq!(
        keys("POST", "/zones/{zone_id}/dns_records"),
        Some(Some(RawPermissions::all_of(vec![
            "#dns_records:edit".to_string()
        ])))
    );
    // Listed groups without a write key: skipped, never imported on read keys.
    assert_eq!(keys("DELETE", "/zones/{zone_id}/dns_records/{id}"), None);
    assert!(imported.skipped.iter().any(|skipped| skipped.method == "DELETE"
        && matches!(skipped.reason, SkipReason::UnresolvedGroups(ref why) if why.contains("write key"))));
    // An action-less key on a write with x-api-token-group: the listed groups' write keys.
    assert_eq!(
        keys("POST", "/accounts/{account_id}/ai-gateway/gateways"),
        Some(Some(RawPermissions::all_of(vec![
            "#ai_gateway:edit".to_string()
        ])))
    );
    assert!(
        imported
            .notes
            .iter()
            .all(|note| !note.contains("does not grant")),
        "{:?}",
        imported.notes
    );
}

/// `x-permgate-permissions.principals` (with the route's own `principal_refusal`) restricts which kinds of
/// credential may call an operation; given alone it keeps the keys of the other annotations, and the
/// rendered file loads with the restriction.
#[test]
fn principals_are_set_per_operation_and_rendered() {
    let base = json!({"paths": {
        "/accounts": {"get": {"operationId": "accounts-list", "x-cfPermissionsRequired": {"enum": ["#organization:read"]}}},
        "/zones/{zone_id}/pagerules": {"get": {"operationId": "pagerules", "x-cfPermissionsRequired": {"enum": ["#zone:read"]}}},
        "/zones/{zone_id}/bad": {"get": {"x-permgate-permissions": {"all_of": ["#a:read"], "principals": []}}},
        "/zones/{zone_id}/bad2": {"get": {"x-permgate-permissions": {"all_of": ["#a:read"], "principals": ["service_key"]}}},
        "/zones/{zone_id}/bad3": {"get": {"x-permgate-permissions": {"all_of": ["#a:read"], "principal_refusal": {"status": 400, "code": 1, "message": "m"}}}},
        "/zones/{zone_id}/bad4": {"get": {"x-permgate-permissions": {"all_of": ["#a:read"], "principals": ["api_key"], "principal_refusal": {"status": 500, "code": 1, "message": "m"}}}},
        "/bad5": {"get": {"x-permgate-permissions": {"public": true, "principals": ["api_key"]}}}
    }});
    let overlay = json!({"paths": {
        "/accounts": {"get": {"x-permgate-permissions": {
            "scope": "none",
            "principals": ["user_token", "api_key"],
            "principal_refusal": {"status": 400, "code": 1001, "message": "List accounts endpoint does not support account owned tokens."}
        }}},
        "/zones/{zone_id}/pagerules": {"get": {"x-permgate-permissions": {"principals": ["user_token", "api_key"]}}}
    }});
    let specs = vec![
        Spec {
            label: "a".to_string(),
            document: base,
        },
        Spec {
            label: "b".to_string(),
            document: overlay,
        },
    ];
    let imported = import(&specs, &options());
    assert_eq!(imported.routes.len(), 2, "{:?}", imported.skipped);
    assert_eq!(imported.skipped.len(), 5);
    assert!(
        imported
            .skipped
            .iter()
            .all(|skipped| matches!(skipped.reason, SkipReason::InvalidAnnotation(_))),
        "{:?}",
        imported.skipped
    );
    let accounts = &imported.routes[0];
    assert_eq!(
        accounts.principals,
        Some(vec![CredentialKind::UserToken, CredentialKind::ApiKey])
    );
    assert_eq!(
        accounts.principal_refusal,
        Some(RawRefusal {
            status: 400,
            code: 1001,
            message: "List accounts endpoint does not support account owned tokens.".to_string(),
        })
    );
    let pagerules = &imported.routes[1];
    assert!(
        matches!(&pagerules.permissions, Some(RawPermissions::List(keys)) if keys == &["#zone:read"]),
        "principals alone keep the spec's keys"
    );
    assert_eq!(pagerules.principal_refusal, None);

    let text = render(&imported, &Provenance::default()).expect("renders");
    assert!(
        text.contains(r#"principals: ["user_token", "api_key"], principal_refusal: {status: 400, code: 1001, message: "List accounts endpoint does not support account owned tokens."}"#),
        "{text}"
    );
    let file = SourceFile::from_text("routes.yaml", text.clone());
    let table = routes::compile(&[file], &mut KeyInterner::new()).unwrap();
    let route = table.lookup("GET", "/client/v4/accounts").unwrap().route;
    assert!(
        !route
            .principals
            .accepts(crate::routes::CredentialKind::AccountToken)
    );
    assert_eq!(
        route.principal_refusal.as_ref().map(|own| own.code),
        Some(1001)
    );
    let route = table
        .lookup("GET", "/client/v4/zones/z/pagerules")
        .unwrap()
        .route;
    assert!(
        !route
            .principals
            .accepts(crate::routes::CredentialKind::AccountToken)
    );
    assert!(
        route
            .principals
            .accepts(crate::routes::CredentialKind::ApiKey)
    );
}

/// A path parameter the spec says is percent-encoded (Workers KV key names: "Use percent-encoding to define key
/// names as part of a URL", on the schema behind a `$ref`), or marks `x-permgate-opaque: true`, is imported
/// as `opaque`; never the scope's parameter; and the rendered route admits `%2F` there only.
#[test]
fn percent_encoded_path_parameters_become_opaque() {
    let document = json!({
        "components": {
            "parameters": {
                "ns": {"in": "path", "name": "namespace_id", "required": true, "schema": {"type": "string"}}
            },
            "schemas": {
                "key_name": {"description": "A key's name. Use percent-encoding to define key names as part of a URL.", "type": "string"},
                "account": {"description": "Account id, URL-encoded.", "type": "string"}
            }
        },
        "paths": {
            "/accounts/{account_id}/storage/kv/namespaces/{namespace_id}/values/{key_name}": {
                "parameters": [{"$ref": "#/components/parameters/ns"}],
                "get": {
                    "x-cfPermissionsRequired": {"enum": ["com.cloudflare.edge.storage.kv.key.read"]},
                    "parameters": [
                        {"in": "path", "name": "key_name", "required": true, "schema": {"$ref": "#/components/schemas/key_name"}},
                        {"in": "path", "name": "account_id", "required": true, "schema": {"$ref": "#/components/schemas/account"}}
                    ]
                }
            },
            "/accounts/{account_id}/things/{thing}": {
                "get": {
                    "x-cfPermissionsRequired": {"enum": ["#thing:read"]},
                    "parameters": [{"in": "path", "name": "thing", "x-permgate-opaque": true, "schema": {"type": "string"}}]
                }
            },
            "/accounts/{account_id}/plain/{id}": {
                "get": {
                    "x-cfPermissionsRequired": {"enum": ["#thing:read"]},
                    "parameters": [{"in": "path", "name": "id", "description": "An identifier.", "schema": {"type": "string"}}]
                }
            }
        }
    });
    let imported = import(&spec(document), &options());
    assert_eq!(imported.routes.len(), 3, "{:?}", imported.skipped);
    let opaque: Vec<&[String]> = imported
        .routes
        .iter()
        .map(|route| route.opaque.as_slice())
        .collect();
    assert_eq!(
        opaque,
        [&[][..], &["key_name".to_string()], &["thing".to_string()]],
        "in path order: plain, storage, things; {:?}",
        imported.routes
    );
    assert!(
        imported.notes.iter().any(|note| note
            .contains("account_id is said to be percent-encoded but holds the resource id")),
        "{:?}",
        imported.notes
    );
    let text = render(&imported, &Provenance::default()).expect("renders");
    assert!(
        text.contains(r#"scope: {account: "account_id"}, opaque: ["key_name"]}"#),
        "{text}"
    );
    let file = SourceFile::from_text("routes.yaml", text.clone());
    let table = routes::compile(&[file], &mut KeyInterner::new()).unwrap();
    let path = "/client/v4/accounts/a1/storage/kv/namespaces/n1/values/images%2Fcat.png";
    let mut target = crate::routes::canonicalize_request("GET", path).unwrap();
    let found = table
        .route_request("GET", &mut target, path)
        .unwrap()
        .unwrap();
    assert_eq!(found.resource_id, Some("a1"));
    let path = "/client/v4/accounts/a1/plain/x%2Fy";
    let mut target = crate::routes::canonicalize_request("GET", path).unwrap();
    assert_eq!(
        table
            .route_request("GET", &mut target, path)
            .map(|found| found.is_some()),
        Err(crate::routes::TargetRejection::EncodedSlash)
    );
}

/// Each route is checked by the loader's own route compiler as it is imported: one the loader would refuse
/// (here a token-verify handler scoped to a zone) is skipped with the compiler's reason, not written.
#[test]
fn a_route_the_loader_would_refuse_is_skipped_with_its_reason() {
    let specs = vec![Spec {
        label: "a".to_string(),
        document: json!({"paths": {
            "/zones/{zone_id}/verify": {"get": {"x-permgate-permissions": {
                "handler": "verify_token", "scope": {"zone": "zone_id"}
            }}},
            "/user/tokens/verify": {"get": {"x-permgate-permissions": {"scope": "none", "handler": "verify_token"}}}
        }}),
    }];
    let imported = import(&specs, &options());
    assert_eq!(imported.routes.len(), 1, "{:?}", imported.skipped);
    assert_eq!(imported.skipped.len(), 1);
    let SkipReason::Rejected(why) = &imported.skipped[0].reason else {
        panic!("{:?}", imported.skipped);
    };
    assert!(
        why.starts_with("routes[0].scope: handler: verify_token"),
        "{why}"
    );
}
