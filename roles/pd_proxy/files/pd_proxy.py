"""erdma.pd PD proxy: one OpenAI-compatible endpoint in front of prefill and decode vLLM engines.

Each completion is sent first to a prefill engine with ``max_tokens: 1`` (the engine computes the
prompt's KV cache and its connector stores or offers it), then to a decode engine with the client's
original request, which loads that KV instead of recomputing it. ``kv_transfer_params`` returned by the
prefill engine (P2P connectors) are handed to the decode request; store-based connectors return none and
the proxy never waits for a signal that they do not send.

    pd_proxy.py --prefill http://10.0.0.1:8100 --decode http://10.0.0.2:8200 --port 9000
    pd_proxy.py --config /etc/pd-proxy/config.json

Endpoints: POST /v1/completions, POST /v1/chat/completions (streaming or not), GET /v1/models,
GET /health, GET /metrics (Prometheus text format).
"""
import argparse
import asyncio
import itertools
import json
import logging
import signal
import sys
import time
import uuid

from aiohttp import ClientError, ClientSession, ClientTimeout, ConnectionTimeoutError, TCPConnector, web

LOG = logging.getLogger("pd_proxy")

DEFAULTS = {
    "host": "127.0.0.1",
    "port": 9000,
    "prefill": [],
    "decode": [],
    "policy": "least_inflight",
    "health_interval": 5.0,
    "health_timeout": 2.0,
    "connect_timeout": 5.0,
    "prefill_timeout": 300.0,
    "decode_timeout": 3600.0,
    "decode_idle_timeout": 300.0,
    "prefill_attempts": 2,
    "max_body_bytes": 8 * 1024 * 1024,
    "prefill_kv_transfer_params": {},
    "log_level": "INFO",
}
POLICIES = ("least_inflight", "round_robin")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
REQUIRED_FIELD = {"/v1/completions": "prompt", "/v1/chat/completions": "messages"}


class ProxyError(Exception):
    """An error answered to the client as an OpenAI-style JSON body with this HTTP status."""

    def __init__(self, status, message, kind="proxy_error"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


class BackendDown(Exception):
    """The backend could not be reached (refused, reset, unreachable): another one may serve."""


def error_response(status, message, kind="proxy_error"):
    body = {"error": {"message": message, "type": kind, "code": status}}
    return web.json_response(body, status=status)


# ---------------------------------------------------------------- metrics
class Histogram:
    def __init__(self):
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds):
        index = next((i for i, edge in enumerate(LATENCY_BUCKETS) if seconds <= edge), len(LATENCY_BUCKETS))
        self.counts[index] += 1
        self.total += seconds
        self.count += 1

    def render(self, name, labels=""):
        lines, running = [], 0
        sep = "," if labels else ""
        for edge, count in zip(LATENCY_BUCKETS + (float("inf"),), self.counts):
            running += count
            bound = "+Inf" if edge == float("inf") else repr(edge)
            lines.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {running}')
        suffix = f"{{{labels}}}" if labels else ""
        lines.append(f"{name}_sum{suffix} {self.total}")
        lines.append(f"{name}_count{suffix} {self.count}")
        return lines


class Metrics:
    """The proxy's own counters, rendered in the Prometheus text format (no extra dependency)."""

    def __init__(self):
        self.requests = {}   # (endpoint, status) -> count
        self.errors = {}     # (stage, reason) -> count
        self.retries = 0
        self.latency = {"prefill": Histogram(), "decode": Histogram(), "ttft": Histogram()}

    def count_request(self, endpoint, status):
        key = (endpoint, str(status))
        self.requests[key] = self.requests.get(key, 0) + 1

    def count_error(self, stage, reason):
        key = (stage, reason)
        self.errors[key] = self.errors.get(key, 0) + 1

    def render(self, pools):
        out = ["# HELP pd_proxy_requests_total Client requests by endpoint and HTTP status.",
               "# TYPE pd_proxy_requests_total counter"]
        out += [f'pd_proxy_requests_total{{endpoint="{e}",status="{s}"}} {n}'
                for (e, s), n in sorted(self.requests.items())]
        out += ["# HELP pd_proxy_errors_total Failures by stage (input, prefill, decode) and reason.",
                "# TYPE pd_proxy_errors_total counter"]
        out += [f'pd_proxy_errors_total{{stage="{st}",reason="{r}"}} {n}'
                for (st, r), n in sorted(self.errors.items())]
        out += ["# HELP pd_proxy_prefill_retries_total Prefills retried on another prefill backend.",
                "# TYPE pd_proxy_prefill_retries_total counter", f"pd_proxy_prefill_retries_total {self.retries}"]
        helps = {"prefill": "Seconds from sending a prefill to its complete answer.",
                 "decode": "Seconds from sending a decode to the end of its answer.",
                 "ttft": "Seconds from a client request's arrival to its first byte of answer (time to first token)."}
        for name, hist in self.latency.items():
            metric = f"pd_proxy_{name}_seconds"
            out += [f"# HELP {metric} {helps[name]}", f"# TYPE {metric} histogram"] + hist.render(metric)
        out += ["# HELP pd_proxy_backend_inflight Requests in flight per backend.",
                "# TYPE pd_proxy_backend_inflight gauge"]
        out += [f'pd_proxy_backend_inflight{{role="{b.role}",backend="{b.url}"}} {b.inflight}'
                for pool in pools for b in pool.backends]
        out += ["# HELP pd_proxy_backend_healthy 1 when the backend passes health checks.",
                "# TYPE pd_proxy_backend_healthy gauge"]
        out += [f'pd_proxy_backend_healthy{{role="{b.role}",backend="{b.url}"}} {int(b.healthy)}'
                for pool in pools for b in pool.backends]
        return "\n".join(out) + "\n"


# ---------------------------------------------------------------- backends
class Backend:
    def __init__(self, role, url):
        self.role = role
        self.url = url.rstrip("/")
        self.healthy = True
        self.inflight = 0

    def mark(self, healthy, why=""):
        if healthy != self.healthy:
            LOG.warning("%s backend %s is %s%s", self.role, self.url,
                        "back in service" if healthy else "out of service", f": {why}" if why else "")
        self.healthy = healthy


class Pool:
    """Backends of one role; picks a healthy one by policy, skipping those already tried."""

    def __init__(self, role, urls, policy):
        self.role = role
        self.backends = [Backend(role, url) for url in urls]
        self.policy = policy
        self._turn = itertools.count()

    def pick(self, exclude=()):
        candidates = [b for b in self.backends if b.healthy and b not in exclude]
        if not candidates:
            return None
        start = next(self._turn) % len(candidates)
        rotated = candidates[start:] + candidates[:start]  # round-robin order breaks ties fairly
        if self.policy == "least_inflight":
            return min(rotated, key=lambda b: b.inflight)
        return rotated[0]

    def summary(self):
        return {"healthy": sum(b.healthy for b in self.backends), "total": len(self.backends),
                "backends": [{"url": b.url, "healthy": b.healthy, "inflight": b.inflight} for b in self.backends]}


# ---------------------------------------------------------------- the proxy
class Proxy:
    def __init__(self, config):
        self.config = config
        self.prefill = Pool("prefill", config["prefill"], config["policy"])
        self.decode = Pool("decode", config["decode"], config["policy"])
        self.metrics = Metrics()
        self.session = None
        self._health_task = None

    # -- lifecycle
    async def start(self, _app=None):
        # No pooled-connection limit: the engines queue requests themselves; a cap here would only
        # add a second, invisible queue in front of them.
        self.session = ClientSession(connector=TCPConnector(limit=0), auto_decompress=False)
        await self.check_health()
        self._health_task = asyncio.create_task(self._health_loop())

    async def stop(self, _app=None):
        if self._health_task:
            self._health_task.cancel()
            await asyncio.gather(self._health_task, return_exceptions=True)
        if self.session:
            await self.session.close()

    def app(self):
        app = web.Application(client_max_size=self.config["max_body_bytes"])
        app.on_startup.append(self.start)
        app.on_cleanup.append(self.stop)
        app.router.add_post("/v1/completions", self.handle_completion)
        app.router.add_post("/v1/chat/completions", self.handle_completion)
        app.router.add_get("/v1/models", self.handle_models)
        app.router.add_get("/health", self.handle_health)
        app.router.add_get("/metrics", self.handle_metrics)
        return app

    # -- health
    async def _probe(self, backend):
        timeout = ClientTimeout(total=self.config["health_timeout"])
        try:
            async with self.session.get(f"{backend.url}/health", timeout=timeout) as resp:
                backend.mark(resp.status == 200, f"/health answered {resp.status}")
        except (ClientError, asyncio.TimeoutError, OSError) as exc:
            backend.mark(False, f"/health failed: {exc.__class__.__name__} {exc}")

    async def check_health(self):
        backends = self.prefill.backends + self.decode.backends
        await asyncio.gather(*(self._probe(b) for b in backends))

    async def _health_loop(self):
        while True:
            await asyncio.sleep(self.config["health_interval"])
            await self.check_health()

    # -- request validation
    async def read_request(self, request):
        """The client's JSON body, or a 4xx ProxyError that says what is wrong with it."""
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge as exc:
            raise ProxyError(413, f"request body is larger than the proxy's limit of "
                                  f"{self.config['max_body_bytes']} bytes", "invalid_request_error") from exc
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProxyError(400, f"request body is not valid JSON: {exc}", "invalid_request_error") from exc
        if not isinstance(body, dict):
            raise ProxyError(400, "request body must be a JSON object", "invalid_request_error")
        for field in ("model", REQUIRED_FIELD[request.path]):
            if field not in body:
                raise ProxyError(400, f"missing required field '{field}'", "invalid_request_error")
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool)
                                       or max_tokens < 1):
            raise ProxyError(400, "'max_tokens' must be a positive integer", "invalid_request_error")
        return body

    def prefill_body(self, body):
        """The client's request reduced to computing the prompt: one token, no stream."""
        req = dict(body, max_tokens=1, stream=False)
        if "max_completion_tokens" in req:
            req["max_completion_tokens"] = 1
        # Options that contradict a one-token, non-streamed answer would make the engine refuse it.
        for key in ("stream_options", "min_tokens"):
            req.pop(key, None)
        if self.config["prefill_kv_transfer_params"]:
            req["kv_transfer_params"] = dict(self.config["prefill_kv_transfer_params"])
        return req

    # -- prefill
    async def _prefill_once(self, backend, path, payload, headers):
        timeout = ClientTimeout(total=self.config["prefill_timeout"], connect=self.config["connect_timeout"])
        backend.inflight += 1
        try:
            async with self.session.post(backend.url + path, json=payload, headers=headers,
                                         timeout=timeout) as resp:
                data = await resp.read()
                return resp.status, resp.headers.get("Content-Type", "application/json"), data
        except ConnectionTimeoutError as exc:
            raise BackendDown(f"no connection within {self.config['connect_timeout']}s") from exc
        except asyncio.TimeoutError:
            raise  # the engine is there but slow: the caller answers 504 rather than prefilling twice
        except (ClientError, OSError) as exc:
            raise BackendDown(f"{exc.__class__.__name__}: {exc}") from exc
        finally:
            backend.inflight -= 1

    async def run_prefill(self, path, body, headers):
        """The prefill engine's answer; retried on another prefill backend when one is down."""
        payload = self.prefill_body(body)
        tried, problems = [], []
        while len(tried) < self.config["prefill_attempts"]:
            backend = self.prefill.pick(exclude=tried)
            if backend is None:
                break
            if tried:
                self.metrics.retries += 1
            tried.append(backend)
            started = time.monotonic()
            try:
                status, ctype, data = await self._prefill_once(backend, path, payload, headers)
            except BackendDown as exc:
                backend.mark(False, str(exc))
                self.metrics.count_error("prefill", "unreachable")
                problems.append(f"{backend.url}: {exc}")
                continue
            except asyncio.TimeoutError as exc:
                self.metrics.count_error("prefill", "timeout")
                raise ProxyError(504, f"prefill on {backend.url} took longer than "
                                      f"{self.config['prefill_timeout']}s") from exc
            self.metrics.latency["prefill"].observe(time.monotonic() - started)
            if status >= 500:
                self.metrics.count_error("prefill", f"http_{status}")
                problems.append(f"{backend.url}: HTTP {status}: {data[:200].decode(errors='replace')}")
                continue
            return status, ctype, data
        detail = "; ".join(problems) if problems else \
            f"all {len(self.prefill.backends)} prefill backend(s) fail their health checks"
        raise ProxyError(503, f"no prefill backend could take the request ({detail})", "service_unavailable")

    # -- decode
    def decode_body(self, body, prefill_data):
        try:
            params = json.loads(prefill_data).get("kv_transfer_params")
        except (ValueError, AttributeError):
            params = None
        return dict(body, kv_transfer_params=params) if params else body

    async def open_decode(self, path, payload, headers):
        """A decode backend and its open response (headers received); other backends on refusal."""
        timeout = ClientTimeout(total=self.config["decode_timeout"], connect=self.config["connect_timeout"],
                                sock_read=self.config["decode_idle_timeout"])
        tried, problems = [], []
        while True:
            backend = self.decode.pick(exclude=tried)
            if backend is None:
                detail = "; ".join(problems) if problems else \
                    f"all {len(self.decode.backends)} decode backend(s) fail their health checks"
                self.metrics.count_error("decode", "unavailable")
                raise ProxyError(503, f"no decode backend is available ({detail}); the proxy retries "
                                      f"them every {self.config['health_interval']}s", "service_unavailable")
            tried.append(backend)
            backend.inflight += 1
            try:
                resp = await self.session.post(backend.url + path, json=payload, headers=headers,
                                               timeout=timeout)
                return backend, resp
            except (ConnectionTimeoutError, ClientError, OSError) as exc:
                backend.inflight -= 1
                if isinstance(exc, asyncio.TimeoutError) and not isinstance(exc, ConnectionTimeoutError):
                    raise  # connected but no answer in time: not a reason to take the backend out
                backend.mark(False, f"{exc.__class__.__name__}: {exc}")
                problems.append(f"{backend.url}: {exc.__class__.__name__}")
            except BaseException:  # timeout or client gone: give the slot back, let the caller see it
                backend.inflight -= 1
                raise

    async def relay_decode(self, request, backend, resp, arrived, streaming):
        """Copy the decode answer to the client as it comes; closing it aborts the engine's request."""
        started = time.monotonic()
        try:
            if not streaming or resp.status != 200:
                data = await resp.read()
                self.metrics.latency["ttft"].observe(time.monotonic() - arrived)
                out = web.Response(status=resp.status, body=data,
                                   content_type=resp.content_type or "application/json")
                return out
            out = web.StreamResponse(status=resp.status)
            out.content_type = resp.content_type or "text/event-stream"
            out.headers["Cache-Control"] = "no-cache"
            await out.prepare(request)
            first = True
            async for chunk in resp.content.iter_any():
                if first:
                    self.metrics.latency["ttft"].observe(time.monotonic() - arrived)
                    first = False
                await out.write(chunk)
            await out.write_eof()
            return out
        finally:
            # An unfinished answer (client gone, timeout) closes the connection, which makes vLLM
            # abort the request instead of decoding for nobody.
            if resp.content.at_eof():
                resp.release()
            else:
                resp.close()
            backend.inflight -= 1
            self.metrics.latency["decode"].observe(time.monotonic() - started)

    # -- handlers
    async def handle_completion(self, request):
        arrived = time.monotonic()
        endpoint = request.path
        status = 500
        try:
            body = await self.read_request(request)
            request_id = request.headers.get("X-Request-Id") or f"pd-{uuid.uuid4().hex}"
            headers = {"X-Request-Id": request_id}
            if "Authorization" in request.headers:
                headers["Authorization"] = request.headers["Authorization"]
            p_status, p_type, p_data = await self.run_prefill(endpoint, body, headers)
            if p_status != 200:
                # The engine refused the request itself (too long, bad parameter): the client's answer.
                self.metrics.count_error("prefill", f"http_{p_status}")
                status = p_status
                return web.Response(status=p_status, body=p_data, content_type=p_type.split(";")[0])
            payload = self.decode_body(body, p_data)
            try:
                backend, resp = await self.open_decode(endpoint, payload, headers)
            except asyncio.TimeoutError as exc:
                self.metrics.count_error("decode", "timeout")
                raise ProxyError(504, "decode backend did not answer in time") from exc
            status = resp.status
            if status != 200:
                self.metrics.count_error("decode", f"http_{status}")
            try:
                return await self.relay_decode(request, backend, resp, arrived, bool(body.get("stream")))
            except asyncio.TimeoutError as exc:
                self.metrics.count_error("decode", "timeout")
                raise ProxyError(504, "decode backend stopped sending within "
                                      f"{self.config['decode_idle_timeout']}s") from exc
        except ProxyError as exc:
            status = exc.status
            if exc.status < 500:
                self.metrics.count_error("input", str(exc.status))
            LOG.info("%s %s -> %s: %s", request.method, endpoint, exc.status, exc.message)
            return error_response(exc.status, exc.message, exc.kind)
        except (ConnectionResetError, asyncio.CancelledError):
            status = 499  # the client went away; its backend requests were closed on the way out
            self.metrics.count_error("client", "disconnected")
            raise
        finally:
            self.metrics.count_request(endpoint, status)

    async def handle_models(self, _request):
        timeout = ClientTimeout(total=self.config["health_timeout"] * 5, connect=self.config["connect_timeout"])
        for pool in (self.decode, self.prefill):
            backend = pool.pick()
            if backend is None:
                continue
            try:
                async with self.session.get(f"{backend.url}/v1/models", timeout=timeout) as resp:
                    return web.Response(status=resp.status, body=await resp.read(), content_type="application/json")
            except (ClientError, OSError, asyncio.TimeoutError) as exc:
                LOG.warning("GET /v1/models on %s failed: %s", backend.url, exc)
        return error_response(503, "no backend is available to list the models", "service_unavailable")

    async def handle_health(self, _request):
        state = {"prefill": self.prefill.summary(), "decode": self.decode.summary()}
        ready = state["prefill"]["healthy"] > 0 and state["decode"]["healthy"] > 0
        state["status"] = "ok" if ready else "unavailable"
        return web.json_response(state, status=200 if ready else 503)

    async def handle_metrics(self, _request):
        text = self.metrics.render([self.prefill, self.decode])
        return web.Response(text=text, content_type="text/plain", charset="utf-8")


# ---------------------------------------------------------------- configuration
def parse_args(argv):
    parser = argparse.ArgumentParser(description="erdma.pd PD proxy (prefill then decode).")
    parser.add_argument("--config", help="JSON file with any of the options below (command line wins)")
    parser.add_argument("--host", help=f"address to bind (default {DEFAULTS['host']})")
    parser.add_argument("--port", type=int, help=f"port to bind (default {DEFAULTS['port']})")
    parser.add_argument("--prefill", action="append", help="prefill engine base URL (repeat for several)")
    parser.add_argument("--decode", action="append", help="decode engine base URL (repeat for several)")
    parser.add_argument("--policy", choices=POLICIES, help="how a backend is chosen")
    for name in ("health_interval", "health_timeout", "connect_timeout", "prefill_timeout", "decode_timeout",
                 "decode_idle_timeout"):
        parser.add_argument("--" + name.replace("_", "-"), type=float, dest=name, help="seconds")
    parser.add_argument("--prefill-attempts", type=int, help="prefill backends tried per request")
    parser.add_argument("--max-body-bytes", type=int, help="largest request body accepted")
    parser.add_argument("--prefill-kv-transfer-params", type=json.loads,
                        help='JSON object sent as kv_transfer_params to prefill (P2P connectors), e.g. '
                             '\'{"do_remote_decode": true}\'')
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    return parser.parse_args(argv)


def load_config(argv):
    """Defaults, then the config file, then the command line; exits with a message when invalid."""
    args = parse_args(argv)
    config = dict(DEFAULTS)
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as handle:
                from_file = json.load(handle)
        except (OSError, ValueError) as exc:
            sys.exit(f"pd_proxy: cannot read config {args.config}: {exc}")
        # Keys that start with "_" are comments (JSON has none), e.g. the "Ansible managed" line.
        from_file = {k: v for k, v in from_file.items() if not k.startswith("_")}
        unknown = sorted(set(from_file) - set(DEFAULTS))
        if unknown:
            sys.exit(f"pd_proxy: unknown option(s) in {args.config}: {', '.join(unknown)}")
        config.update(from_file)
    config.update({k: v for k, v in vars(args).items() if v is not None and k in DEFAULTS})
    problems = validate(config)
    if problems:
        sys.exit("pd_proxy: invalid configuration: " + "; ".join(problems))
    return config


def validate(config):
    problems = []
    for role in ("prefill", "decode"):
        urls = config[role]
        if not urls or not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls):
            problems.append(f"'{role}' needs at least one http(s):// URL (got {urls!r})")
    if config["policy"] not in POLICIES:
        problems.append(f"'policy' must be one of {', '.join(POLICIES)}")
    if not isinstance(config["prefill_kv_transfer_params"], dict):
        problems.append("'prefill_kv_transfer_params' must be a JSON object")
    for key in ("health_interval", "health_timeout", "connect_timeout", "prefill_timeout", "decode_timeout",
                "decode_idle_timeout", "prefill_attempts", "max_body_bytes"):
        if not isinstance(config[key], (int, float)) or config[key] <= 0:
            problems.append(f"'{key}' must be a positive number")
    return problems


async def serve(config):
    """Run until cancelled; client disconnects cancel their handler (and so their backend requests)."""
    runner = web.AppRunner(Proxy(config).app(), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config["host"], config["port"])
    await site.start()
    LOG.info("PD proxy on http://%s:%s, prefill %s, decode %s, policy %s", config["host"], config["port"],
             config["prefill"], config["decode"], config["policy"])
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
        LOG.info("stopping")
    finally:
        await runner.cleanup()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    config = load_config(argv)
    if "--check-config" in argv:
        print(f"pd_proxy: configuration OK: {len(config['prefill'])} prefill, {len(config['decode'])} decode "
              f"backend(s), listening on {config['host']}:{config['port']}")
        return 0
    logging.basicConfig(level=config["log_level"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
