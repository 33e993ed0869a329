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
  2. legacy keys the spec requires (#resource:action): RESOURCE_GROUPS maps the resource to group base names;
     a read key goes to "<base> Read" and every writing group of the base, any other action to the writing groups.
  3. dotted keys the spec requires (com.cloudflare....): DOTTED_GROUPS maps the key's prefix to group base names,
     with the same read/write split (read, list and report are read actions; a key with no action counts as read).
  4. co-occurrence: every group that Cloudflare's newer spec lists in x-api-token-group on an operation gets that
     operation's x-cfPermissionsRequired keys (cf_routes.tsv `groups` with `permission_keys`), so each group that
     the real API says suffices does suffice here (e.g. the 39 groups that may GET a zone all get #zone:read).
Names are resolved to every group of that name (seven names exist in both account and zone scope).
"""

import csv
import json
import re
import sys
from pathlib import Path

DATA = Path(sys.argv[1] if len(sys.argv) > 1 else "config/cloudflare/source")
OUT = Path("config/cloudflare")

READ_ACTIONS = {"read", "list", "report"}
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

# Dotted key prefix -> group base names; the longest matching prefix wins.
DOTTED_GROUPS = {
    "com.cloudflare.api.account.ai": ["Workers AI"],
    "com.cloudflare.api.account.aig": ["AI Gateway"],
    "com.cloudflare.api.account.email.routing.address": ["Email Routing Addresses"],
    "com.cloudflare.api.account.zone.email.routing": ["Email Routing Rules"],
    "com.cloudflare.api.account.read": ["Account Settings"],
    "com.cloudflare.api.account.update": ["Account Settings"],
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

# Keys whose groups no table rule gives: group names, exactly.
SPECIAL = {
    "#zaraz:edit": ["Zaraz Edit", "Zaraz Admin"],
    "#zaraz:publish": ["Zaraz Admin"],
    # Starting a tail reads a script's logs: the tail group and the script writers.
    "com.cloudflare.edge.worker.tail.create": ["Workers Tail Read", "Workers Scripts Write"],
}

# Overlays on operations of the 2024-08-06 spec: facts from the data README that the spec does not carry.
OVERLAYS = [
    ("/user/tokens/verify", "get", {"scope": "none", "handler": "verify_token"},
     "any usable token; the gateway answers Cloudflare's verify itself"),
    ("/zones", "get", {"scope": "none"},
     "any valid token; the API filters the collection by the caller (data README)"),
    ("/accounts", "get", {"scope": "none"},
     "any valid token; the API filters the collection by the caller (data README)"),
    ("/zones/{zone_id}", "patch", ["#zone:edit"],
     "the newer spec lists only Zone Write (x-api-token-group); DELETE of the same zone requires #zone:edit"),
]

SECURITY = [{"api_token": []}, {"api_email": [], "api_key": []}]


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


def groups_for(bases, read, groups):
    """Names of the groups of `bases` that grant a read (or a write) action."""
    out = []
    for group in groups:
        base, last = split_name(group["name"])
        if base not in bases and group["name"] not in bases:
            continue
        if group["name"] in bases:  # a group named by its whole name (Cache Purge) grants every action
            out.append(group["id"])
        elif last in WRITE_WORDS or (read and last == "Read"):
            out.append(group["id"])
        elif read and last not in ("Read",) + WRITE_WORDS:  # "Zero Trust Report", "Workers Tail Read"…
            out.append(group["id"])
    return out


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
            op["x-permgate-permissions"] = {"scope": "none", "handler": "verify_token"}
        paths.setdefault(row["path"], {})[row["method"].lower()] = op
    for path, method, annotation, why in OVERLAYS:
        assert method in spec["paths"][path], (path, method)
        paths.setdefault(path, {})[method] = {"x-permgate-permissions": annotation, "x-permgate-source": why}
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

    # --- the catalog ------------------------------------------------------------------------------------
    keys = {group["id"]: set(name_rule(group["name"])) for group in groups}
    by_name = {}
    for group in groups:
        by_name.setdefault(group["name"], []).append(group["id"])

    required = set()
    for item in spec["paths"].values():
        for method, op in item.items():
            if isinstance(op, dict):
                required.update(op.get("x-cfPermissionsRequired", {}).get("enum", []))
    for row in rows:
        required.update(k for k in row["permission_keys"].split(";") if k)

    unmapped = []
    for key in sorted(required):
        if key.startswith("#"):
            resource, _, action = key[1:].partition(":")
            bases = RESOURCE_GROUPS.get(resource, [])
        else:
            prefix = max((p for p in DOTTED_GROUPS if key == p or key.startswith(p + ".")), key=len, default=None)
            bases = DOTTED_GROUPS.get(prefix, [])
            action = key[len(prefix) + 1:].rsplit(".", 1)[-1] if prefix and key != prefix else "read"
        if key in SPECIAL:
            targets = [group_id for name in SPECIAL[key] for group_id in by_name.get(name, [])]
        else:
            targets = groups_for(bases, action in READ_ACTIONS, groups)
        for group_id in targets:
            keys[group_id].add(key)
        if not targets:
            unmapped.append(key)

    for row in rows:
        if not row["groups"] or not row["permission_keys"]:
            continue
        for name in row["groups"].split(";"):
            for group_id in by_name.get(name, []):
                keys[group_id].update(row["permission_keys"].split(";"))

    lines = [
        "# The Cloudflare permission-group catalog: the 311 real groups (id, name, scopes, description) of",
        "# config/cloudflare/source/cf_permission_groups.json, with a key mapping of this example's own.",
        "#",
        "# No public source lists the permission keys inside a Cloudflare group. The keys below are derived by",
        "# config/cloudflare/derive.py (its docstring has the detail), in this order:",
        "#   1. name rule: \"<X> Read\" -> #x:read; \"<X> Write\"/\"<X> Edit\" -> #x:read + #x:edit; other names",
        "#      -> #<name>:edit. Every group gets a key, and teams can require these keys in their own routes.",
        "#   2. the legacy keys the spec requires (#resource:action) by a resource -> group-name table",
        "#      (dns_records -> DNS, organization -> Account Settings, ssl -> SSL and Certificates, ...): a read",
        "#      key goes to the Read and the Write group, any other action to the Write group.",
        "#   3. the dotted keys the spec requires (com.cloudflare....) by a key-prefix -> group-name table",
        "#      (edge.worker.script -> Workers Scripts, api.token -> API Tokens, ...), same read/write split.",
        "#   4. co-occurrence: every group that Cloudflare's newer spec lists in x-api-token-group on an",
        "#      operation gets that operation's x-cfPermissionsRequired keys (cf_routes.tsv), so a group the real",
        "#      API says suffices does suffice here (the 39 groups that may GET a zone all hold #zone:read).",
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
    print(f"supplement: {sum(len(v) for v in paths.values())} operations on {len(paths)} paths")


if __name__ == "__main__":
    main()
