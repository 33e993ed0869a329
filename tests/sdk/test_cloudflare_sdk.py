"""The official Cloudflare Python SDK (PyPI `cloudflare` 5.x) through permgate: statuses and codes as Cloudflare gives them.

permgate serves the real route table (routes/cloudflare-v4.yaml) with the real permission-group catalog
(config/cloudflare/permission_groups.yaml) in front of a small upstream that answers like Cloudflare for zone get,
DNS records list/create/delete, account get and list, and Workers KV values. The SDK raises what the real API
makes it raise: BadRequestError for a path with no route (7000), an account token on the account list (1001) and a
malformed legacy key (6003/6103); PermissionDeniedError for denials. The TypeScript SDK's suite is
tests/sdk/cloudflare_sdk.test.mjs. Run by tests/sdk.rs under `cargo test` (with
PERMGATE_BIN set to the binary it built; target/debug/permgate otherwise), or by hand:

    python3 -m venv target/sdk-venv && target/sdk-venv/bin/pip install cloudflare==5.9.0 pytest==8.4.2
    target/sdk-venv/bin/python -m pytest -q tests/sdk

Retries: the SDK retries 408, 409, 429 and every 5xx (twice by default) and never a 4xx, so a gateway denial
(403) reaches the caller on the first answer; a gateway 502/504 is retried like an upstream one and, when the
retries run out, still carries the gateway's code (1200 / 1201) in Cloudflare's envelope.
"""

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import cloudflare
import httpx
import pytest
from cloudflare import Cloudflare

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("PERMGATE_BIN", REPO / "target" / "debug" / "permgate"))

ACCOUNT_A = "01a7362d577a6c3019a474fd6f485823"
ACCOUNT_B = "9a7806061c88ada191ed06f989cc3dac"
ZONE_1 = "023e105f4ecef8ad9ca31a8372d0c353"  # in A
ZONE_2 = "80ce4497cb0af370df5b9c891d7e2182"  # in A
ZONE_3 = "3f2a9a7e6b8c4d5e9f0a1b2c3d4e5f60"  # in B
JOE = "e5def38bc61044775ec59fa0607cda84"
JOE_EMAIL = "joe.smith@example.com"
JOE_KEY = "d2d7103c1e3037147124aac2448c04f72adf4"  # a global API key: 37 lower-case hex characters
NAMESPACE = "0f2ac74b498b48028cb68387c421e279"

DNS_READ = "82e64a83756745bbbb1c9c2701bf816b"
ACCOUNT_SETTINGS_READ = "c1fde68c7bcc44588cbb6ddbc16d6480"
KV_READ = "8b47d2786a534c08a1f94ee8f9f599ef"

TOKENS = {
    # secret: (id, owner, groups, resources, extra)
    "pgt_sdk_dns_read_zone1": ("5d1f6c0e2b7a4c8e9f1a2b3c4d5e6f70", {"user": JOE}, [DNS_READ],
                               {f"com.cloudflare.api.account.zone.{ZONE_1}": "*"}, {}),
    "pgt_sdk_expired": ("6e2a7d1f3c8b4d9fa02b3c4d5e6f7081", {"user": JOE}, [DNS_READ],
                        {f"com.cloudflare.api.account.zone.{ZONE_1}": "*"},
                        {"expires_on": "2024-01-01T00:00:00Z"}),
    "pgt_sdk_account_a": ("7f3b8e2a4d9c4eaf813c4d5e6f708192", {"account": ACCOUNT_A},
                          [ACCOUNT_SETTINGS_READ, DNS_READ],
                          {f"com.cloudflare.api.account.{ACCOUNT_A}": "*"}, {}),
    "pgt_sdk_kv_read": ("8a4c9f3b5e0d4fb0924d5e6f708192a5", {"account": ACCOUNT_A}, [KV_READ],
                        {f"com.cloudflare.api.account.{ACCOUNT_A}": "*"}, {}),
}


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the upstream: answers like Cloudflare, counts what reaches it -------------------------------------------

def envelope(result, **extra):
    return {"success": True, "errors": [], "messages": [], "result": result, **extra}


class Upstream:
    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"null") if length else None
                with upstream.lock:
                    upstream.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                path, _, query = self.path.partition("?")
                page = int(parse_qs(query).get("page", ["1"])[0])
                status, payload = upstream.route(self.command, path, body, page)
                raw = isinstance(payload, dict) and "raw" in payload
                data = payload["raw"].encode() if raw else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream" if raw else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, method=None):
        with self.lock:
            return sum(1 for request in self.requests if method is None or request[0] == method)

    @staticmethod
    def route(method, path, body, page=1):
        kv_value = re.fullmatch(
            r"/client/v4/accounts/[0-9a-f]{32}/storage/kv/namespaces/[0-9a-f]{32}/values/([^/]+)", path)
        if kv_value and method == "GET":
            return 200, {"raw": f"value of {kv_value.group(1)}"}
        if path == "/client/v4/accounts" and method == "GET":
            # One account on page 1, none after: auto-pagination asks for page 2 and stops.
            rows = [{"id": ACCOUNT_A, "name": "Example Company"}] if page == 1 else []
            return 200, envelope(rows, result_info={"page": page, "per_page": 20, "count": len(rows),
                                                    "total_count": 1, "total_pages": 1})
        zone = re.fullmatch(r"/client/v4/zones/([0-9a-f]{32})", path)
        records = re.fullmatch(r"/client/v4/zones/([0-9a-f]{32})/dns_records", path)
        record = re.fullmatch(r"/client/v4/zones/([0-9a-f]{32})/dns_records/([0-9a-f]{32})", path)
        account = re.fullmatch(r"/client/v4/accounts/([0-9a-f]{32})", path)
        if zone and method == "GET":
            return 200, envelope({"id": zone.group(1), "name": "example.com", "status": "active",
                                  "account": {"id": ACCOUNT_A, "name": "Example Company"}})
        if records and method == "GET":
            rows = [{"id": "372e67954025e0ba6aaa6d586b9e0b59", "type": "A", "name": "www.example.com",
                     "content": "198.51.100.4", "ttl": 3600, "proxied": False}]
            return 200, envelope(rows, result_info={"page": 1, "per_page": 100, "count": 1,
                                                    "total_count": 1, "total_pages": 1})
        if records and method == "POST":
            return 200, envelope({"id": "023e105f4ecef8ad9ca31a8372d0c353", **(body or {})})
        if record and method == "DELETE":
            return 200, envelope({"id": record.group(2)})
        if account and method == "GET":
            return 200, envelope({"id": account.group(1), "name": "Example Company", "settings": {}})
        return 404, {"success": False, "errors": [{"code": 7003, "message": "No route for the URI"}],
                     "messages": [], "result": None}


# --- the gateway ---------------------------------------------------------------------------------------------

def write_config(folder, upstream_url):
    port, admin = free_port(), free_port()
    (folder / "gateway.yaml").write_text(f"""\
listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
upstream:
  url: {upstream_url}
  connect_timeout_ms: 500
policy_files:
  - {REPO / "config/cloudflare/permission_groups.yaml"}
  - {REPO / "config/cloudflare/resource_types.yaml"}
  - accounts.yaml
  - tokens.yaml
route_files:
  - {REPO / "routes/cloudflare-v4.yaml"}
decision_log: {{ sink: off }}
""")
    (folder / "accounts.yaml").write_text(f"""\
users:
  - {{ id: {JOE}, email: {JOE_EMAIL}, api_key_sha256: {sha256(JOE_KEY)} }}
accounts:
  - id: {ACCOUNT_A}
    name: Example Company
    zones: [{{ id: {ZONE_1}, name: example.com }}, {{ id: {ZONE_2}, name: example.net }}]
    members:
      - user: {JOE}
        policies:
          - id: a1b2c3d4e5f60718293a4b5c6d7e8f90
            access: allow
            permission_groups: [{{ id: 0f0e0d0c0b0a09080706050403020100, name: All (inline), permissions: ["*"] }}]
            resource_groups:
              - scope: {{ key: com.cloudflare.api.account.{ACCOUNT_A}, objects: [{{ key: "*" }}] }}
  - id: {ACCOUNT_B}
    name: Globex
    zones: [{{ id: {ZONE_3}, name: globex.example }}]
""")
    tokens = ["tokens:"]
    for secret, (token_id, owner, groups, resources, extra) in TOKENS.items():
        tokens.append(f"  - id: {token_id}")
        tokens.append(f"    name: {secret}")
        tokens.append(f"    owner: {json.dumps(owner)}")
        tokens.append(f"    secret_sha256: {sha256(secret)}")
        for key, value in extra.items():
            tokens.append(f"    {key}: {value}")
        tokens.append("    policies:")
        tokens.append(f"      - id: {token_id[::-1]}")
        tokens.append("        effect: allow")
        tokens.append(f"        permission_groups: {json.dumps([{'id': group} for group in groups])}")
        tokens.append(f"        resources: {json.dumps(resources)}")
    (folder / "tokens.yaml").write_text("\n".join(tokens) + "\n")
    return port


class Gateway:
    def __init__(self, upstream_url):
        assert BIN.exists(), f"{BIN} is missing: build it first (cargo build, or cargo test)"
        self.folder = Path(tempfile.mkdtemp(prefix="permgate-sdk-"))
        self.port = write_config(self.folder, upstream_url)
        self.log = open(self.folder / "permgate.log", "wb")
        self.process = subprocess.Popen([str(BIN), "serve", "--config", str(self.folder / "gateway.yaml")],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"permgate exited: {(self.folder / 'permgate.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("permgate did not start listening")
                time.sleep(0.05)
        self.base_url = f"http://127.0.0.1:{self.port}/client/v4"

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture(scope="module")
def upstream():
    server = Upstream()
    yield server
    server.server.shutdown()


@pytest.fixture(scope="module")
def gateway(upstream):
    running = Gateway(upstream.url)
    yield running
    running.stop()


def client(gateway, token=None, retries=0, **kwargs):
    return Cloudflare(api_token=token, base_url=gateway.base_url, max_retries=retries, **kwargs)


def code_of(error):
    return error.value.body["errors"][0]["code"] if isinstance(error.value.body, dict) else None


# --- the tests -------------------------------------------------------------------------------------------------

def test_dns_read_token_lists_records_but_cannot_create_one(gateway, upstream):
    cf = client(gateway, "pgt_sdk_dns_read_zone1")
    page = cf.dns.records.list(zone_id=ZONE_1)
    assert [record.name for record in page.result] == ["www.example.com"]
    assert cf.zones.get(zone_id=ZONE_1).id == ZONE_1
    posts = upstream.count("POST")
    with pytest.raises(cloudflare.PermissionDeniedError) as denied:
        cf.dns.records.create(zone_id=ZONE_1, name="api.example.com", type="A", content="198.51.100.7", ttl=1)
    assert denied.value.status_code == 403
    assert code_of(denied) == 10000
    assert denied.value.body["errors"][0]["message"] == "Authentication error"
    assert upstream.count("POST") == posts, "a denied call must never reach the upstream"


def test_the_upstream_sees_the_caller_not_its_secret(gateway, upstream):
    client(gateway, "pgt_sdk_dns_read_zone1").dns.records.list(zone_id=ZONE_1)
    method, path, headers = upstream.requests[-1]
    assert (method, path) == ("GET", f"/client/v4/zones/{ZONE_1}/dns_records")
    assert headers.get("x-permgate-principal") == f"user:{JOE}"
    assert "authorization" not in headers


def test_an_expired_token_is_code_1000(gateway):
    with pytest.raises(cloudflare.PermissionDeniedError) as denied:
        client(gateway, "pgt_sdk_expired").dns.records.list(zone_id=ZONE_1)
    assert code_of(denied) == 1000
    assert denied.value.body["errors"][0]["message"] == "Invalid API Token"


def test_an_unknown_token_is_code_1000(gateway):
    with pytest.raises(cloudflare.PermissionDeniedError) as denied:
        client(gateway, "pgt_sdk_never_issued").zones.get(zone_id=ZONE_1)
    assert code_of(denied) == 1000


def test_a_zone_scoped_token_is_denied_on_another_zone(gateway):
    cf = client(gateway, "pgt_sdk_dns_read_zone1")
    with pytest.raises(cloudflare.PermissionDeniedError) as denied:
        cf.dns.records.list(zone_id=ZONE_2)  # the user may, the token may not
    assert code_of(denied) == 10000
    with pytest.raises(cloudflare.PermissionDeniedError):
        cf.zones.get(zone_id=ZONE_3)


def test_an_account_token_is_confined_to_its_account(gateway):
    cf = client(gateway, "pgt_sdk_account_a")
    assert cf.accounts.get(account_id=ACCOUNT_A).id == ACCOUNT_A
    assert cf.dns.records.list(zone_id=ZONE_2).result
    for call in (lambda: cf.accounts.get(account_id=ACCOUNT_B),
                 lambda: cf.dns.records.list(zone_id=ZONE_3)):
        with pytest.raises(cloudflare.PermissionDeniedError) as denied:
            call()
        assert code_of(denied) == 10000


def test_verify_answers_for_user_and_account_tokens(gateway, upstream):
    before = upstream.count()
    verified = client(gateway, "pgt_sdk_dns_read_zone1").user.tokens.verify()
    assert verified.id == TOKENS["pgt_sdk_dns_read_zone1"][0]
    assert verified.status == "active"
    account = client(gateway, "pgt_sdk_account_a").accounts.tokens.verify(account_id=ACCOUNT_A)
    assert account.id == TOKENS["pgt_sdk_account_a"][0]
    assert account.status == "active"
    assert upstream.count() == before, "verify is answered by the gateway itself"
    with pytest.raises(cloudflare.PermissionDeniedError) as denied:
        client(gateway, "pgt_sdk_expired").user.tokens.verify()
    assert code_of(denied) == 1000


def test_verify_body_is_cloudflares(gateway):
    response = httpx.get(f"{gateway.base_url}/user/tokens/verify",
                         headers={"Authorization": "Bearer pgt_sdk_dns_read_zone1"})
    assert response.status_code == 200
    assert response.json() == {
        "success": True, "errors": [],
        "messages": [{"code": 10000, "message": "This API Token is valid and active", "type": None}],
        "result": {"id": TOKENS["pgt_sdk_dns_read_zone1"][0], "status": "active"},
    }


def test_legacy_email_and_key(gateway):
    cf = Cloudflare(api_email=JOE_EMAIL, api_key=JOE_KEY, base_url=gateway.base_url, max_retries=0)
    assert cf.zones.get(zone_id=ZONE_1).id == ZONE_1
    deleted = cf.dns.records.delete("372e67954025e0ba6aaa6d586b9e0b59", zone_id=ZONE_1)
    assert deleted.id == "372e67954025e0ba6aaa6d586b9e0b59"
    wrong = Cloudflare(api_email=JOE_EMAIL, api_key="0123456789abcdef0123456789abcdef01234", base_url=gateway.base_url, max_retries=0)
    with pytest.raises(cloudflare.PermissionDeniedError) as denied:
        wrong.zones.get(zone_id=ZONE_1)
    assert code_of(denied) == 9103


def test_no_credential_is_a_bad_request_9106(gateway):
    response = httpx.get(f"{gateway.base_url}/zones/{ZONE_1}")
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == 9106


def counting_client(gateway, token, attempts):
    def count(response):
        attempts.append(response.status_code)

    http = cloudflare.DefaultHttpxClient(event_hooks={"response": [count]})
    return Cloudflare(api_token=token, base_url=gateway.base_url, http_client=http)  # default retries (2)


def test_default_retries_do_not_turn_a_denial_into_something_else(gateway, upstream):
    attempts = []
    cf = counting_client(gateway, "pgt_sdk_dns_read_zone1", attempts)
    assert cf.max_retries == 2
    posts = upstream.count("POST")
    with pytest.raises(cloudflare.PermissionDeniedError) as denied:
        cf.dns.records.create(zone_id=ZONE_1, name="api.example.com", type="A", content="198.51.100.7", ttl=1)
    assert code_of(denied) == 10000
    assert attempts == [403], "a 403 is answered once, never retried"
    assert upstream.count("POST") == posts
    # And an allowed call after it still works on the same client.
    assert cf.dns.records.list(zone_id=ZONE_1).result


def test_a_gateway_502_is_retried_and_still_says_1200():
    # Nothing listens on the upstream port: every forwarded call is 502/1200 from the gateway itself.
    dead = Gateway(f"http://127.0.0.1:{free_port()}")
    try:
        attempts = []
        cf = counting_client(dead, "pgt_sdk_dns_read_zone1", attempts)
        with pytest.raises(cloudflare.InternalServerError) as failed:
            cf.zones.get(zone_id=ZONE_1)
        assert failed.value.status_code == 502
        assert code_of(failed) == 1200
        assert attempts == [502, 502, 502], "the SDK retries 5xx twice; the last answer is still the gateway's"
        # Authorization still comes first: a denial is 403 even when the upstream is down.
        attempts.clear()
        with pytest.raises(cloudflare.PermissionDeniedError):
            cf.zones.get(zone_id=ZONE_3)
        assert attempts == [403]
    finally:
        dead.stop()


# --- answers as Cloudflare gives them (issue 21) ---------------------------------------------------------------

def test_a_path_the_table_does_not_have_is_a_bad_request_7000(gateway, upstream):
    cf = client(gateway, "pgt_sdk_dns_read_zone1")
    before = upstream.count()
    with pytest.raises(cloudflare.BadRequestError) as missing:
        cf.rulesets.list(zone_id=ZONE_1)  # no permission annotation in the spec: no route in the table
    assert missing.value.status_code == 400
    assert code_of(missing) == 7000
    assert missing.value.body["errors"][0]["message"] == "No route for that URI"
    # A method the path does not have is answered the same way.
    with pytest.raises(cloudflare.BadRequestError) as method:
        cf.put(f"/zones/{ZONE_1}/dns_records", body={}, cast_to=httpx.Response)
    assert code_of(method) == 7000
    assert upstream.count() == before


def test_an_account_token_may_not_list_accounts_1001(gateway, upstream):
    with pytest.raises(cloudflare.BadRequestError) as refused:
        client(gateway, "pgt_sdk_account_a").accounts.list()
    assert refused.value.status_code == 400
    assert code_of(refused) == 1001
    assert refused.value.body["errors"][0]["message"] == \
        "List accounts endpoint does not support account owned tokens."
    assert [account.id for account in client(gateway, "pgt_sdk_dns_read_zone1").accounts.list()] == [ACCOUNT_A]


def test_a_malformed_legacy_key_is_6003_6103_before_any_lookup(gateway):
    cf = Cloudflare(api_email=JOE_EMAIL, api_key="not_a_global_api_key", base_url=gateway.base_url, max_retries=0)
    with pytest.raises(cloudflare.BadRequestError) as malformed:
        cf.zones.get(zone_id=ZONE_1)
    assert code_of(malformed) == 6003
    assert malformed.value.body["errors"][0]["error_chain"] == [
        {"code": 6103, "message": "Invalid format for X-Auth-Key header"}]


def test_a_token_next_to_a_leftover_email_and_key_in_the_environment(gateway, upstream, monkeypatch):
    # The Python SDK sends the email and key (not the token) when all three are set: the leftover key is what
    # permgate checks, as Cloudflare would.
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "pgt_sdk_dns_read_zone1")
    monkeypatch.setenv("CLOUDFLARE_EMAIL", JOE_EMAIL)
    monkeypatch.setenv("CLOUDFLARE_API_KEY", "0123456789abcdef0123456789abcdef01234")
    cf = Cloudflare(base_url=gateway.base_url, max_retries=0)
    before = upstream.count()
    with pytest.raises(cloudflare.PermissionDeniedError) as denied:
        cf.zones.get(zone_id=ZONE_1)
    assert code_of(denied) == 9103
    # Both kinds in one request, as other clients send them, are refused with 6003/6111.
    response = httpx.get(f"{gateway.base_url}/zones/{ZONE_1}", headers={
        "Authorization": "Bearer pgt_sdk_dns_read_zone1", "X-Auth-Email": JOE_EMAIL, "X-Auth-Key": JOE_KEY})
    assert response.status_code == 400
    assert response.json()["errors"][0]["error_chain"][0]["code"] == 6111
    assert upstream.count() == before


def test_a_workers_kv_key_name_with_a_slash_reaches_the_upstream_encoded(gateway, upstream):
    cf = client(gateway, "pgt_sdk_kv_read")
    value = cf.kv.namespaces.values.get("images/cat.png", account_id=ACCOUNT_A, namespace_id=NAMESPACE)
    assert value.text() == "value of images%2Fcat.png"
    method, path, _ = upstream.requests[-1]
    assert (method, path) == ("GET", f"/client/v4/accounts/{ACCOUNT_A}/storage/kv/namespaces/{NAMESPACE}"
                                     "/values/images%2Fcat.png"), "forwarded byte for byte"
    # A slash in any other parameter is still refused (the SDK encodes it: a rejected target, 6003).
    before = upstream.count()
    with pytest.raises(cloudflare.BadRequestError) as refused:
        client(gateway, "pgt_sdk_dns_read_zone1").dns.records.get("a/b", zone_id=ZONE_1)
    assert code_of(refused) == 6003
    assert upstream.count() == before
