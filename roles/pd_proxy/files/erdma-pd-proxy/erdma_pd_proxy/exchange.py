# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One client request: its checks (auth, body), its ids and what the engines receive of it."""
import hmac
import json
import re
import uuid

from aiohttp import web

REQUIRED_FIELD = {"/v1/completions": "prompt", "/v1/chat/completions": "messages"}
# Deeper than any OpenAI request (tool schemas included) and far from Python's recursion limit.
MAX_JSON_DEPTH = 64
CLIENT_ID_MAX = 128
_CLIENT_ID_JUNK = re.compile(r"[^A-Za-z0-9._:@/+=-]")
# Set by the proxy only: a client must not choose what the engines do with the KV cache (with P2P
# connectors these name the remote host and blocks to read).
PROXY_ONLY_FIELDS = ("kv_transfer_params",)


class ProxyError(Exception):
    """An error answered to the client as an OpenAI-style JSON body with this HTTP status."""

    def __init__(self, status, message, kind="proxy_error", headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.headers = headers or {}


def error_body(status, message, kind):
    return {"error": {"message": message, "type": kind, "code": status}}


def error_response(status, message, kind="proxy_error", headers=None):
    return web.json_response(error_body(status, message, kind), status=status, headers=headers)


class Exchange:
    """The ids and outcome of one client request, for the response headers, the log and the metrics."""

    def __init__(self, request, arrived):
        self.request = request
        self.arrived = arrived
        # Engines (vLLM) use X-Request-Id as their internal request id: it must be unique, so it is ours.
        self.engine_id = f"pd-{uuid.uuid4().hex}"
        self.client_id = client_request_id(request.headers.get("X-Request-Id"))
        self.status = None          # the HTTP status the client received, once it was sent
        self.response = None
        self.prefill_url = None
        self.decode_url = None

    def response_headers(self):
        return {"X-Request-Id": self.client_id or self.engine_id, "X-PD-Request-Id": self.engine_id}


def client_request_id(raw):
    """The client's X-Request-Id made safe to echo and log: known characters only, bounded length."""
    if not raw:
        return None
    return _CLIENT_ID_JUNK.sub("", raw)[:CLIENT_ID_MAX] or None


def bearer_matches(header, key):
    """True when an Authorization header carries `Bearer <key>` (compared in constant time)."""
    parts = (header or "").split(" ", 1)
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return False
    return hmac.compare_digest(parts[1].strip().encode(), key.encode())


def json_depth(value):
    """How deeply lists and objects nest in a parsed JSON value (iterative: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_body(raw, path):
    """The client's JSON body, or a 400 ProxyError that says what is wrong with it."""
    try:
        body = json.loads(raw)
    except RecursionError as exc:
        raise ProxyError(400, f"request body nests deeper than {MAX_JSON_DEPTH} levels",
                         "invalid_request_error") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProxyError(400, f"request body is not valid JSON: {exc}", "invalid_request_error") from exc
    if not isinstance(body, dict):
        raise ProxyError(400, "request body must be a JSON object", "invalid_request_error")
    if json_depth(body) > MAX_JSON_DEPTH:
        raise ProxyError(400, f"request body nests deeper than {MAX_JSON_DEPTH} levels", "invalid_request_error")
    for field in ("model", REQUIRED_FIELD[path]):
        if field not in body:
            raise ProxyError(400, f"missing required field '{field}'", "invalid_request_error")
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                   or max_tokens < 1):
        raise ProxyError(400, "'max_tokens' must be a positive integer", "invalid_request_error")
    return {k: v for k, v in body.items() if k not in PROXY_ONLY_FIELDS}


def prefill_body(body, kv_transfer_params):
    """The client's request reduced to computing the prompt: one token, no stream."""
    req = dict(body, max_tokens=1, stream=False)
    if "max_completion_tokens" in req:
        req["max_completion_tokens"] = 1
    # Options that contradict a one-token, non-streamed answer would make the engine refuse it.
    for key in ("stream_options", "min_tokens"):
        req.pop(key, None)
    if kv_transfer_params:
        req["kv_transfer_params"] = dict(kv_transfer_params)
    return req


def decode_body(body, prefill_data):
    """The client's request, plus the kv_transfer_params that the prefill engine returned (P2P)."""
    try:
        params = json.loads(prefill_data).get("kv_transfer_params")
    except (ValueError, AttributeError, RecursionError):
        params = None
    return dict(body, kv_transfer_params=params) if params else body
