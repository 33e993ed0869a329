"""Envoy's ext_authz gRPC client, built from Envoy's own protos (the `xds-protos` package), not from permgate's
types: sends each CheckRequest of a JSON list and prints the CheckResponses as one JSON list.

Usage: python ext_authz_check.py HOST:PORT < requests.json
Each request: {"method": "GET", "path": "/a?b", "headers": {"authorization": "Bearer …"}, "raw": false}
("raw": true sends the headers in `header_map` with `raw_value`, as Envoy's encode_raw_headers does).
"""
import json
import sys

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import attribute_context_pb2, external_auth_pb2, external_auth_pb2_grpc


def check_request(spec):
    http = attribute_context_pb2.AttributeContext.HttpRequest(
        method=spec.get("method", ""), path=spec.get("path", ""), host="api.test", scheme="http"
    )
    headers = dict(spec.get("headers", {}))
    headers.setdefault(":authority", "api.test")
    if spec.get("raw"):
        http.header_map.CopyFrom(
            base_pb2.HeaderMap(
                headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in headers.items()]
            )
        )
    else:
        for key, value in headers.items():
            http.headers[key] = value
    request = external_auth_pb2.CheckRequest()
    if not spec.get("no_http"):
        request.attributes.request.http.CopyFrom(http)
    return request


def describe(response):
    out = {"grpc_code": response.status.code}
    kind = response.WhichOneof("http_response")
    out["kind"] = kind
    if kind == "ok_response":
        ok = response.ok_response
        out["headers"] = {
            h.header.key: {"value": h.header.value, "append_action": h.append_action} for h in ok.headers
        }
        out["headers_to_remove"] = list(ok.headers_to_remove)
    elif kind == "denied_response":
        denied = response.denied_response
        out["status"] = denied.status.code
        out["headers"] = {h.header.key: {"value": h.header.value} for h in denied.headers}
        out["body"] = denied.body
    return out


def main():
    target = sys.argv[1]
    specs = json.load(sys.stdin)
    with grpc.insecure_channel(target) as channel:
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        results = [describe(stub.Check(check_request(spec), timeout=10)) for spec in specs]
    print(json.dumps(results))


if __name__ == "__main__":
    main()
