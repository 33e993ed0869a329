#!/usr/bin/env python3
"""Derives the two hand-off files of the Cloudflare example from the vendored Cloudflare data in
config/cloudflare/source (see its README for the origin of each file; run from the repo root):

  python3 config/cloudflare/derive.py [DATA_DIR]     (default config/cloudflare/source)

writes
  config/cloudflare/openapi-supplement.json  the operations of newer spec versions (cf_routes.tsv rows whose
                                             row_source is newer-spec-sample-only) plus a few overlays, as an
                                             OpenAPI document that `permgate routes import-openapi` reads after
                                             the 2024-08-06 spec
  config/cloudflare/permission_groups.yaml   the 311 real permission groups with this example's key mapping

The key mapping (no public source lists the keys inside a Cloudflare group, so this is ours), in order:
  1. name rule: "<X> Read" -> #x:read; "<X> Write" / "<X> Edit" -> #x:read, #x:edit; any other name -> #name:edit
     (x = the name without the last word, lower case, non-alphanumerics as _). Gives every group a key.
  2. legacy keys the routes require (#resource:action): RESOURCE_GROUPS maps the resource to group base names.
  3. dotted keys the routes require (com.cloudflare....): DOTTED_GROUPS maps the key's resource (the key
     without its action word) to group base names, the longest matching prefix winning (DOTTED_EXACT: exact
     resources only).
     In 2 and 3 a key's action is its own last word (after ":" or the last "."), whatever the tables say:
     a read action (READ_ACTIONS) goes to "<base> Read", the writing groups of the base ("Write", "Edit",
     "Admin") and its other groups ("Run", "Report"...); a write action (WRITE_ACTIONS) to the writing groups
     only; a key with no action word (com.cloudflare.api.account.aig) goes where a read key goes, which is
     safe because a write route never passes on it alone: the importer then also requires its write flavour
     (the key with action "edit": com.cloudflare.api.account.aig.edit), a write key.
  4. co-occurrence: every group that Cloudflare's newer spec lists in x-api-token-group on an operation gets that
     operation's keys (cf_routes.tsv `groups` with `permission_keys`, plus the write flavours the importer adds),
     so each group that the real API says suffices does suffice here (the 39 groups that may GET a zone all
     get #zone:read).
Names are resolved to every group of that name (seven names exist in both account and zone scope).

No group named "... Read" ever gets a write key or a pattern: every grant goes through grant(), which refuses
them (and prints what it refused), and the script fails if the written catalog breaks the rule. The one
exception, READ_EXCEPTIONS, is com.cloudflare.edge.worker.tail.create: opening a log tail only streams a
script's logs, and Cloudflare's "Workers Tail Read" group exists for it. The action vocabulary, the exception
and the write-flavour rule mirror src/policy/actions.rs and src/openapi (write_requirement); the tests
(tests/suite/cloudflare_routes.rs) fail when the two disagree.
"""

import csv
import json
import re
import sys
from pathlib import Path

DATA = Path(sys.argv[1] if len(sys.argv) > 1 else "config/cloudflare/source")
OUT = Path("config/cloudflare")

# Mirrors src/policy/actions.rs: READ_ACTIONS, WRITE_ACTIONS, READ_EXCEPTIONS.
READ_ACTIONS = {"read", "list", "report"}
WRITE_ACTIONS = {"create", "update", "edit", "write", "delete", "purge", "publish", "batch", "revoke",
                 "deploy", "import", "upload", "run", "execute"}
READ_EXCEPTIONS = {
    "com.cloudflare.edge.worker.tail.create":
        "opening a log tail only streams a script's logs; Cloudflare's Workers Tail Read group exists for it",
}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
WRITE_WORDS = ("Write", "Edit", "Admin")

# Legacy resource -> group base names (the group name without its last word).
RESOURCE_GROUPS = {
    "analytics": ["Analytics", "Account Analytics"],
    "billing": ["Billing"],
    "cache_purge": ["Cache Purge"],
    "dex": ["Cloudflare DEX"],
    "dns_records": ["DNS"],
    "logs": ["Logs"],
    "organization": ["Account Settings"],
    "ssl": ["SSL and Certificates", "Account: SSL and Certificates"],
    "teams": ["Zero Trust"],
    "waf": ["Account WAF", "Zone WAF", "Firewall Services"],
    "zaraz": ["Zaraz"],
    "zone": ["Zone"],
    "zone_settings": ["Zone Settings"],
}

# Dotted key resource (the key without its action word) -> group base names; the longest matching prefix wins.
DOTTED_GROUPS = {
    "com.cloudflare.api.account.ai": ["Workers AI"],
    "com.cloudflare.api.account.aig": ["AI Gateway"],
    "com.cloudflare.api.account.email.routing.address": ["Email Routing Addresses"],
    "com.cloudflare.api.account.zone.email.routing": ["Email Routing Rules"],
    "com.cloudflare.api.account.url-scanner": ["URL Scanner"],
    "com.cloudflare.api.account.token": ["Account API Tokens"],
    "com.cloudflare.api.iam": ["Account Settings"],
    "com.cloudflare.api.token": ["API Tokens"],
    "com.cloudflare.api.user": ["User Details"],
    "com.cloudflare.edge.hyperdrive": ["Hyperdrive"],
    "com.cloudflare.edge.r2.bucket": ["Workers R2 Storage"],
    "com.cloudflare.edge.storage.kv": ["Workers KV Storage"],
    "com.cloudflare.edge.vectorize": ["Vectorize"],
    "com.cloudflare.edge.worker": ["Workers Scripts"],
    "com.cloudflare.edge.worker.queue": ["Queues"],
    "com.cloudflare.edge.worker.route": ["Workers Routes"],
}
# Resources matched exactly, not as a prefix: com.cloudflare.api.account.read / .update are the account's own
# settings, and a prefix would take every other com.cloudflare.api.account.* key for Account Settings too.
DOTTED_EXACT = {
    "com.cloudflare.api.account": ["Account Settings"],
}

# Keys whose groups no table rule gives: group names, exactly (grant() still refuses a write key to a Read group).
SPECIAL = {
    "#zaraz:edit": ["Zaraz Edit", "Zaraz Admin"],
    "#zaraz:publish": ["Zaraz Admin"],
    # Starting a tail reads a script's logs (READ_EXCEPTIONS): the tail group and the script writers.
    "com.cloudflare.edge.worker.tail.create": ["Workers Tail Read", "Workers Scripts Write"],
}

# Cloudflare's answers to an account-owned token on endpoints that do not support them (the 2024-08-06 spec
# does not carry them). Both bodies are Cloudflare's as users quote them: GET /accounts, 400
# {"code":1001,"message":"List accounts endpoint does not support account owned tokens."} (the full response
# body in github.com/edgefirst-dev/starter issue 3); page rules, code 1011 "Page Rules endpoint does not support
# account owned tokens." (the message and code quoted in github.com/cloudflare/cloudflare-docs issue 23256;
# the 400 status is as on GET /accounts, and as third-party clients record it, not confirmed by Cloudflare).
ACCOUNT_TOKEN_REFUSALS = {
    "/accounts": {"status": 400, "code": 1001,
                  "message": "List accounts endpoint does not support account owned tokens."},
    "pagerules": {"status": 400, "code": 1011,
                  "message": "Page Rules endpoint does not support account owned tokens."},
}
PAGE_RULES = [("/zones/{zone_id}/pagerules", "get"), ("/zones/{zone_id}/pagerules", "post"),
              ("/zones/{zone_id}/pagerules/settings", "get"),
              ("/zones/{zone_id}/pagerules/{pagerule_id}", "get"),
              ("/zones/{zone_id}/pagerules/{pagerule_id}", "put"),
              ("/zones/{zone_id}/pagerules/{pagerule_id}", "patch"),
              ("/zones/{zone_id}/pagerules/{pagerule_id}", "delete")]

# Overlays on operations of the 2024-08-06 spec: facts from the data README that the spec does not carry.
OVERLAYS = [
    ("/user/tokens/verify", "get", {"scope": "user", "handler": "verify_token"},
     "user-owned tokens only (Cloudflare answers 1000 to an account token here); the gateway answers "
     "Cloudflare's verify itself"),
    ("/zones", "get", {"scope": "none"},
     "any valid token; the API filters the collection by the caller (data README)"),
    ("/accounts", "get", {"scope": "none", "principals": ["user_token", "api_key"],
                          "principal_refusal": ACCOUNT_TOKEN_REFUSALS["/accounts"]},
     "any valid user token or legacy key; the API filters the collection by the caller (data README); an "
     "account-owned token is refused with Cloudflare's own answer"),
    ("/zones/{zone_id}", "patch", ["#zone:edit"],
     "the newer spec lists only Zone Write (x-api-token-group); DELETE of the same zone requires #zone:edit"),
] + [
    (path, method, {"principals": ["user_token", "api_key"], "principal_refusal": ACCOUNT_TOKEN_REFUSALS["pagerules"]},
     "Page Rules do not support account-owned tokens (Cloudflare's compatibility matrix); the keys are the spec's")
    for path, method in PAGE_RULES
]

# Routes on one child resource (issue 20): every operation under one of these paths is scoped to the resource
# type that config/cloudflare/resource_types.yaml declares, with the parent's and the child's path parameters
# (an overlay x-permgate-permissions: {scope: ...}; the keys stay the spec's).
CHILD_SCOPES = [
    ("/accounts/{account_id}/r2/buckets/{bucket_name}", {"account": "account_id", "r2_bucket": "bucket_name"}),
]

# The bucket-scoped groups ("... Bucket Item Read/Write", scoped to com.cloudflare.edge.r2.bucket) get the
# bucket keys the routes require, by action: a token on one bucket then reads (or writes) that bucket's
# routes. Deleting a bucket (com.cloudflare.edge.r2.bucket.delete) stays with the account-level R2 group.
BUCKET_ITEM_GROUPS = {
    "com.cloudflare.edge.r2.bucket.read": ["Workers R2 Storage Bucket Item Read", "Workers R2 Storage Bucket Item Write"],
    "com.cloudflare.edge.r2.bucket.write": ["Workers R2 Storage Bucket Item Write"],
}

SECURITY = [{"api_token": []}, {"api_email": [], "api_key": []}]
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def slug(text):
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def split_name(name):
    """(base, last word)."""
    base, _, last = name.rpartition(" ")
    return (base.rstrip(":").strip(), last) if base else (name, "")


def name_rule(name):
    base, last = split_name(name)
    if last == "Read":
        return [f"#{slug(base)}:read"]
    if last in ("Write", "Edit"):
        return [f"#{slug(base)}:read", f"#{slug(base)}:edit"]
    return [f"#{slug(name)}:edit"]


def split_key(key):
    """(resource, action word or "") of a permission key: the action is the key's own last word, after the ":"
    of a legacy key or the last "." of a dotted one, when it is a known action; else the key names none."""
    if key.startswith("#"):
        resource, colon, action = key[1:].rpartition(":")
        return (resource, action) if colon else (key[1:], "")
    resource, _, last = key.rpartition(".")
    if last in READ_ACTIONS or last in WRITE_ACTIONS:
        return resource, last
    return key, ""


def key_action(key):
    """"read", "write" or None (no action word, or an unknown one): src/policy/actions.rs key_action."""
    if key in READ_EXCEPTIONS:
        return "read"
    action = split_key(key)[1]
    if action in READ_ACTIONS:
        return "read"
    if action in WRITE_ACTIONS:
        return "write"
    return None


def write_flavour(key):
    """The key with action "edit" (appended when it names none): src/policy/actions.rs write_flavour."""
    resource, _ = split_key(key)
    return f"#{resource}:edit" if key.startswith("#") else f"{resource}.edit"


def route_keys(method, keys):
    """The keys the importer's route for this operation requires (src/openapi write_requirement, without a
    catalog): on a write whose keys name no write action, and that is not a POST of read keys only, the keys
    plus the write flavour of each."""
    if method in SAFE_METHODS or not keys:
        return keys
    actions = [key_action(key) for key in keys]
    if "write" in actions or (method == "POST" and all(action == "read" for action in actions)):
        return keys
    return keys + [write_flavour(key) for key, action in zip(keys, actions) if action != "write"]


def is_read_group(name):
    return name.split()[-1:] == ["Read"]


def groups_for(bases, action, groups):
    """Ids of the groups of `bases` that get a key whose action is `action` ("read", "write" or None)."""
    out = []
    for group in groups:
        base, last = split_name(group["name"])
        if base not in bases and group["name"] not in bases:
            continue
        if group["name"] in bases:  # a group named by its whole name (Cache Purge) grants every action
            out.append(group["id"])
        elif last in WRITE_WORDS:
            out.append(group["id"])
        elif action != "write":  # "<base> Read", and "Zero Trust Report", "AI Gateway Run"...: reads only
            out.append(group["id"])
    return out


def resource_bases(key):
    """The group base names of a key's resource, by RESOURCE_GROUPS, DOTTED_EXACT or DOTTED_GROUPS."""
    resource, _ = split_key(key)
    if key.startswith("#"):
        return RESOURCE_GROUPS.get(resource, [])
    if resource in DOTTED_EXACT:
        return DOTTED_EXACT[resource]
    prefix = max((p for p in DOTTED_GROUPS if resource == p or resource.startswith(p + ".")), key=len, default=None)
    return DOTTED_GROUPS.get(prefix, [])


def main():
    catalog = json.loads((DATA / "cf_permission_groups.json").read_text())
    groups = catalog["groups"]
    spec = json.loads((DATA / "openapi-2024-08-06.json").read_text())
    with (DATA / "cf_routes.tsv").open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))

    # --- the supplement ---------------------------------------------------------------------------------
    paths = {}
    for row in rows:
        if row["row_source"] != "newer-spec-sample-only":
            continue
        op = {"operationId": row["operation_id"], "x-permgate-source": "cf_routes.tsv (newer spec versions)"}
        if row["permission_keys"]:
            op["x-cfPermissionsRequired"] = {"enum": row["permission_keys"].split(";")}
        if row["groups"]:
            op["x-api-token-group"] = row["groups"].split(";")
        if row["path"].endswith("/tokens/verify"):
            # An account's verify path answers only for that account's own tokens.
            param = re.match(r"^/accounts/\{(\w+)\}/", row["path"])
            scope = {"account": param.group(1)} if param else "user"
            op["x-permgate-permissions"] = {"scope": scope, "handler": "verify_token"}
        paths.setdefault(row["path"], {})[row["method"].lower()] = op
    for path, method, annotation, why in OVERLAYS:
        assert method in spec["paths"][path], (path, method)
        paths.setdefault(path, {})[method] = {"x-permgate-permissions": annotation, "x-permgate-source": why}
    child_scoped = 0
    for prefix, scope in CHILD_SCOPES:
        methods_by_path = {}
        for path, item in spec["paths"].items():
            methods_by_path.setdefault(path, set()).update(m for m in item if m in HTTP_METHODS)
        for row in rows:
            methods_by_path.setdefault(row["path"], set()).add(row["method"].lower())
        for path in sorted(methods_by_path):
            if path != prefix and not path.startswith(prefix + "/"):
                continue
            for method in sorted(methods_by_path[path]):
                op = paths.setdefault(path, {}).setdefault(method, {})
                annotation = op.setdefault("x-permgate-permissions", {})
                assert isinstance(annotation, dict) and "scope" not in annotation, (path, method)
                annotation["scope"] = scope
                op.setdefault("x-permgate-source", "a route on one child resource (config/cloudflare/resource_types.yaml)")
                child_scoped += 1
    supplement = {
        "openapi": "3.0.3",
        "info": {
            "title": "permgate supplement to Cloudflare's 2024-08-06 OpenAPI spec",
            "version": "1",
            "description": "Generated by config/cloudflare/derive.py from config/cloudflare/source: the "
            "operations of newer spec versions (cf_routes.tsv rows with row_source newer-spec-sample-only) and "
            "overlays (x-permgate-permissions) for facts the 2024 spec does not carry. Read after the spec by "
            "`permgate routes import-openapi`; a later spec overlays an earlier one per operation.",
        },
        "servers": [{"url": "https://api.cloudflare.com/client/v4"}],
        "security": SECURITY,
        "paths": dict(sorted(paths.items())),
    }
    (OUT / "openapi-supplement.json").write_text(json.dumps(supplement, indent=2) + "\n")

    # --- the catalog ---------------------------------------------------------------------------------------
    keys = {group["id"]: set() for group in groups}
    by_id = {group["id"]: group for group in groups}
    refused = []

    def grant(group_id, key, why):
        """The one way a key enters a group: a Read group never gets a write key or a pattern."""
        name = by_id[group_id]["name"]
        if is_read_group(name) and ("*" in key or key_action(key) == "write"):
            refused.append(f"{name}: {key} ({why})")
            return
        keys[group_id].add(key)

    for group in groups:
        for key in name_rule(group["name"]):
            grant(group["id"], key, "name rule")
    by_name = {}
    for group in groups:
        by_name.setdefault(group["name"], []).append(group["id"])

    # Every operation as the importer sees it: cf_routes.tsv holds the spec's 1,533 operations (the same keys
    # as its x-cfPermissionsRequired) and the 15 of newer versions that the supplement adds.
    operations = []
    for row in rows:
        op_keys = [k for k in row["permission_keys"].split(";") if k]
        names = [n for n in row["groups"].split(";") if n]
        operations.append((row["method"], route_keys(row["method"], op_keys), names))
    for _, method, annotation, _ in OVERLAYS:  # an overlay's own key list replaces the operation's keys
        if isinstance(annotation, list):
            operations.append((method.upper(), annotation, []))
    required = set(key for _, op_keys, _ in operations for key in op_keys)

    unmapped = []
    for key in sorted(required):
        if key in SPECIAL:
            targets = [group_id for name in SPECIAL[key] for group_id in by_name.get(name, [])]
        else:
            targets = groups_for(resource_bases(key), key_action(key), groups)
        for group_id in targets:
            grant(group_id, key, "table")
        if not targets:
            unmapped.append(key)

    for key, names in BUCKET_ITEM_GROUPS.items():
        assert key in required, key
        for name in names:
            for group_id in by_name[name]:
                grant(group_id, key, "bucket item group")

    for method, op_keys, names in operations:
        for name in names:
            for group_id in by_name.get(name, []):
                for key in op_keys:
                    grant(group_id, key, f"x-api-token-group of a {method}")

    broken = [
        f"{group['name']} ({group['id']}): {key}"
        for group in groups
        if is_read_group(group["name"])
        for key in sorted(keys[group["id"]])
        if "*" in key or key_action(key) == "write"
    ]
    if broken:
        sys.exit("a Read group holds a write key or a pattern:\n  " + "\n  ".join(broken))

    lines = [
        "# The Cloudflare permission-group catalog: the 311 real groups (id, name, scopes, description) of",
        "# config/cloudflare/source/cf_permission_groups.json, with a key mapping of this example's own.",
        "#",
        "# No public source lists the permission keys inside a Cloudflare group. The keys below are derived by",
        "# config/cloudflare/derive.py (its docstring has the detail), in this order:",
        "#   1. name rule: \"<X> Read\" -> #x:read; \"<X> Write\"/\"<X> Edit\" -> #x:read + #x:edit; other names",
        "#      -> #<name>:edit. Every group gets a key, and teams can require these keys in their own routes.",
        "#   2. the legacy keys the routes require (#resource:action) by a resource -> group-name table",
        "#      (dns_records -> DNS, organization -> Account Settings, ssl -> SSL and Certificates, ...).",
        "#   3. the dotted keys the routes require (com.cloudflare....) by a resource -> group-name table",
        "#      (edge.worker.script -> Workers Scripts, api.token -> API Tokens, ...).",
        "#      In 2 and 3 the key's own last word is its action: a read action (read, list, report) goes to",
        "#      the Read and the Write group, a write action (create, update, edit, delete, ...) to the Write",
        "#      group only. A key naming no action (com.cloudflare.api.account.aig) goes where a read key",
        "#      goes: the importer never lets a write pass on it alone, but also requires its write flavour",
        "#      (com.cloudflare.api.account.aig.edit), which only Write groups hold.",
        "#   Besides: the bucket-scoped groups (Workers R2 Storage Bucket Item Read/Write) hold the bucket keys the",
        "#      routes require by action (read; read + write), so a token on one bucket reads or writes it.",
        "#   4. co-occurrence: every group that Cloudflare's newer spec lists in x-api-token-group on an",
        "#      operation gets that operation's keys (cf_routes.tsv), so a group the real API says suffices",
        "#      does suffice here (the 39 groups that may GET a zone all hold #zone:read).",
        "# No group named \"... Read\" holds a write key or a pattern, except Workers Tail Read's",
        "# com.cloudflare.edge.worker.tail.create: opening a log tail only streams a script's logs.",
        "# Result: every key routes/cloudflare-v4.yaml requires is granted by at least one group",
        "# (`permgate validate --config config/cloudflare/gateway.yaml` has no \"no permission group grants\").",
        "# Regenerate: python3 config/cloudflare/derive.py",
        "",
        "permission_groups:",
    ]
    for group in sorted(groups, key=lambda g: (g["scopes"][0], g["name"], g["id"])):
        group_keys = sorted(keys[group["id"]])
        lines.append(f"  - id: {group['id']}")
        lines.append(f"    name: {json.dumps(group['name'])}")
        lines.append(f"    scopes: [{', '.join(group['scopes'])}]")
        if group.get("description"):
            lines.append(f"    description: {json.dumps(group['description'])}")
        lines.append(f"    permissions: [{', '.join(json.dumps(k) for k in group_keys)}]")
    (OUT / "permission_groups.yaml").write_text("\n".join(lines) + "\n")

    print(f"{len(groups)} groups, {len(required)} required keys, unmapped by tables: {unmapped or 'none'}")
    print(f"refused to Read groups (write keys and patterns): {refused or 'none'}")
    print(f"supplement: {sum(len(v) for v in paths.values())} operations on {len(paths)} paths "
          f"({child_scoped} scoped to a child resource)")


if __name__ == "__main__":
    main()
