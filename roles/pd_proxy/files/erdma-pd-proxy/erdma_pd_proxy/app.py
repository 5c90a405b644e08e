# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The proxy's aiohttp application: prefill, then decode, with health-checked backend pools.

Endpoints: POST /v1/completions, POST /v1/chat/completions (streaming or not), GET /v1/models (these
three need the API key when one is set), GET /health, GET /metrics (Prometheus text format).
"""
import asyncio
import json
import logging
import time

from aiohttp import ClientError, ClientSession, ClientTimeout, ConnectionTimeoutError, TCPConnector, web

from erdma_pd_proxy.backends import Pool
from erdma_pd_proxy.exchange import (Exchange, ProxyError, bearer_matches, decode_body, error_body,
                                     error_response, parse_body, prefill_body)
from erdma_pd_proxy.metrics import CONTENT_TYPE, Metrics

LOG = logging.getLogger("pd_proxy")


# An engine that answers these refused the proxy's key, not the client: the client gets a 502.
ENGINE_AUTH_STATUSES = (401, 403)


class BackendDown(Exception):
    """The backend could not be reached (refused, reset, unreachable): another one may serve."""


class DecodeStalled(Exception):
    """The decode backend sent no body bytes for the idle timeout."""


class IdleWatch:
    """Fails a backend response's body stream when nothing arrives for `idle` seconds.

    One timer per response, re-armed only when it fires, so a chunk costs one float assignment
    (a wait_for per chunk would cost a task per chunk). It starts once the response headers are in:
    the wait for the headers is bounded by the total timeout only.
    """

    def __init__(self, resp, idle):
        self.loop = asyncio.get_running_loop()
        self.resp = resp
        self.idle = idle
        self.last = self.loop.time()
        self.fired = False
        self.handle = self.loop.call_later(idle, self._check)

    def touch(self):
        self.last = self.loop.time()

    def _check(self):
        remaining = self.last + self.idle - self.loop.time()
        if remaining > 0:
            self.handle = self.loop.call_later(remaining, self._check)
            return
        self.fired = True
        self.resp.content.set_exception(DecodeStalled(f"nothing received for {self.idle}s"))

    def cancel(self):
        self.handle.cancel()


class Proxy:
    def __init__(self, config):
        self.config = config
        self.prefill = Pool("prefill", config["prefill"], config["policy"])
        self.decode = Pool("decode", config["decode"], config["policy"])
        self.metrics = Metrics([self.prefill, self.decode])
        self.api_key = config.get("api_key", "")
        engine_key = config.get("engine_api_key", "")
        self.engine_auth = f"Bearer {engine_key}" if engine_key else ""
        self.active = 0
        self.session = None
        self._health_task = None

    # -- lifecycle
    async def start(self, _app=None):
        # No pooled-connection limit: the engines queue requests themselves; a cap here would only
        # add a second, invisible queue in front of them (max_concurrent_requests bounds the proxy).
        # Engines are asked for identity encoding; whatever they compress anyway is decompressed, since
        # the proxy answers with its own headers and never passes a Content-Encoding on.
        self.session = ClientSession(connector=TCPConnector(limit=0), auto_decompress=True)
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
    def _engine_auth_headers(self):
        return {"Authorization": self.engine_auth} if self.engine_auth else {}

    async def _probe(self, backend):
        timeout = ClientTimeout(total=self.config["health_timeout"])
        try:
            async with self.session.get(f"{backend.url}/health", timeout=timeout,
                                        headers=self._engine_auth_headers()) as resp:
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

    # -- admission and input
    def check_api_key(self, request):
        if self.api_key and not bearer_matches(request.headers.get("Authorization"), self.api_key):
            raise ProxyError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                             "authentication_error", headers={"WWW-Authenticate": "Bearer"})

    def admit(self, request):
        self.check_api_key(request)
        limit = self.config["max_concurrent_requests"]
        if self.active >= limit:
            self.metrics.count_error("limit", "concurrency")
            raise ProxyError(503, f"the proxy already handles its limit of {limit} concurrent requests; retry "
                                  "shortly", "service_unavailable", headers={"Retry-After": "1"})

    async def read_body(self, request):
        """The raw body, bounded in size and in time (a slow client cannot hold a slot for ever)."""
        try:
            return await asyncio.wait_for(request.read(), self.config["client_timeout"])
        except web.HTTPRequestEntityTooLarge as exc:
            raise ProxyError(413, f"request body is larger than the proxy's limit of "
                                  f"{self.config['max_body_bytes']} bytes", "invalid_request_error") from exc
        except asyncio.TimeoutError as exc:
            raise ProxyError(408, f"the request body did not arrive within {self.config['client_timeout']}s",
                             "invalid_request_error") from exc

    def engine_headers(self, request, exchange):
        headers = {"X-Request-Id": exchange.engine_id, "Accept-Encoding": "identity"}
        if self.engine_auth:
            headers["Authorization"] = self.engine_auth
        elif "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]  # no key of our own: the client's
        return headers

    # -- prefill
    async def _prefill_once(self, backend, path, payload, headers):
        timeout = ClientTimeout(total=self.config["prefill_timeout"], connect=self.config["connect_timeout"])
        backend.inflight += 1
        try:
            async with self.session.post(backend.url + path, json=payload, headers=headers,
                                         timeout=timeout) as resp:
                data = await resp.read()
                self.metrics.count_backend_answer(backend)
                return resp.status, resp.content_type or "application/json", data
        except ConnectionTimeoutError as exc:
            raise BackendDown(f"no connection within {self.config['connect_timeout']}s") from exc
        except asyncio.TimeoutError:
            raise  # the engine is there but slow: the caller answers 504 rather than prefilling twice
        except (ClientError, OSError) as exc:
            raise BackendDown(f"{exc.__class__.__name__}: {exc}") from exc
        finally:
            backend.inflight -= 1

    async def run_prefill(self, exchange, path, body, headers):
        """The prefill engine's answer; retried on another prefill backend when one is down."""
        payload = prefill_body(body, self.config["prefill_kv_transfer_params"])
        tried, problems = [], []
        while len(tried) < self.config["prefill_attempts"]:
            backend = self.prefill.pick(exclude=tried)
            if backend is None:
                break
            if tried:
                self.metrics.retries.inc()
            tried.append(backend)
            exchange.prefill_url = backend.url
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
            if status in ENGINE_AUTH_STATUSES:
                raise self.engine_auth_error("prefill", backend)
            if status >= 500:
                self.metrics.count_error("prefill", f"http_{status}")
                problems.append(f"{backend.url}: HTTP {status}: {data[:200].decode(errors='replace')}")
                continue
            return status, ctype, data
        detail = "; ".join(problems) if problems else \
            f"all {len(self.prefill.backends)} prefill backend(s) fail their health checks"
        raise ProxyError(503, f"no prefill backend could take the request ({detail})", "service_unavailable")

    def engine_auth_error(self, stage, backend):
        self.metrics.count_error(stage, "engine_auth")
        return ProxyError(502, f"the {stage} engine {backend.url} refused the proxy's engine API key "
                               "(PD_PROXY_ENGINE_API_KEY must be the engines' --api-key)", "proxy_error")

    # -- decode
    def no_decode_error(self, problems=()):
        detail = "; ".join(problems) if problems else \
            f"all {len(self.decode.backends)} decode backend(s) fail their health checks"
        self.metrics.count_error("decode", "unavailable")
        return ProxyError(503, f"no decode backend is available ({detail}); the proxy retries them every "
                               f"{self.config['health_interval']}s", "service_unavailable")

    async def open_decode(self, exchange, path, payload, headers):
        """A decode backend and its open response (headers received); other backends on refusal.

        Only the total timeout bounds the wait for the headers: a non-streamed answer sends them when the
        whole completion is done. The idle timeout applies between body chunks (see IdleWatch)."""
        timeout = ClientTimeout(total=self.config["decode_timeout"], connect=self.config["connect_timeout"])
        tried, problems = [], []
        while True:
            backend = self.decode.pick(exclude=tried)
            if backend is None:
                raise self.no_decode_error(problems)
            tried.append(backend)
            exchange.decode_url = backend.url
            backend.inflight += 1
            try:
                resp = await self.session.post(backend.url + path, json=payload, headers=headers, timeout=timeout)
                self.metrics.count_backend_answer(backend)
                return backend, resp
            except asyncio.TimeoutError as exc:
                backend.inflight -= 1
                if isinstance(exc, ConnectionTimeoutError):
                    backend.mark(False, f"no connection within {self.config['connect_timeout']}s")
                    problems.append(f"{backend.url}: {exc.__class__.__name__}")
                    continue
                self.metrics.count_error("decode", "timeout")
                raise ProxyError(504, f"decode on {backend.url} did not answer within "
                                      f"{self.config['decode_timeout']}s") from exc
            except (ClientError, OSError) as exc:
                backend.inflight -= 1
                backend.mark(False, f"{exc.__class__.__name__}: {exc}")
                problems.append(f"{backend.url}: {exc.__class__.__name__}")
            except BaseException:  # the client went away: give the slot back, let the caller see it
                backend.inflight -= 1
                raise

    def _decode_failure(self, exc):
        """(metric reason, HTTP status, message) for a decode answer that broke off."""
        if isinstance(exc, DecodeStalled):
            return "idle_timeout", 504, f"decode backend sent nothing for {self.config['decode_idle_timeout']}s"
        if isinstance(exc, asyncio.TimeoutError):
            return "timeout", 504, f"decode took longer than {self.config['decode_timeout']}s in all"
        return "broken", 502, f"decode backend broke off its answer ({exc.__class__.__name__})"

    async def relay_decode(self, request, exchange, backend, resp, streaming):
        """Copy the decode answer to the client; closing it early aborts the engine's request."""
        started = time.monotonic()
        watch = IdleWatch(resp, self.config["decode_idle_timeout"])
        complete = False
        try:
            if streaming and resp.status == 200:
                complete = await self._relay_stream(request, exchange, resp, watch)
                return exchange.response
            chunks = []
            try:
                async for chunk in self._chunks(resp, watch):
                    chunks.append(chunk)
            except (DecodeStalled, asyncio.TimeoutError, ClientError) as exc:
                reason, status, message = self._decode_failure(exc)
                self.metrics.count_error("decode", reason)
                raise ProxyError(status, message) from exc
            complete = True
            self.metrics.latency["ttft"].observe(time.monotonic() - exchange.arrived)
            if resp.status != 200:
                self.metrics.count_error("decode", f"http_{resp.status}")
            out = web.Response(status=resp.status, body=b"".join(chunks),
                               content_type=resp.content_type or "application/json")
            return await self.send(request, exchange, out)
        finally:
            watch.cancel()
            # An unfinished answer (client gone, timeout) closes the connection, which makes vLLM
            # abort the request instead of decoding for nobody.
            if complete:
                resp.release()
            else:
                resp.close()
            backend.inflight -= 1
            self.metrics.latency["decode"].observe(time.monotonic() - started)

    @staticmethod
    async def _chunks(resp, watch):
        while True:
            chunk = await resp.content.readany()
            if not chunk:
                return
            watch.touch()
            yield chunk

    async def _relay_stream(self, request, exchange, resp, watch):
        """Stream the decode answer; True when it ended normally.

        Once the 200 and its headers are sent, a failure can only be told inside the stream: an SSE
        error event (as vLLM sends its own), then the end of the body."""
        out = web.StreamResponse(status=200, headers=exchange.response_headers())
        out.content_type = resp.content_type or "text/event-stream"
        out.headers["Cache-Control"] = "no-cache"
        await out.prepare(request)
        exchange.response, exchange.status = out, 200
        first, tail = True, b"\n\n"
        try:
            async for chunk in self._chunks(resp, watch):
                if first:
                    self.metrics.latency["ttft"].observe(time.monotonic() - exchange.arrived)
                    first = False
                await out.write(chunk)
                # A client slow to take the stream is not a stalled decode: time from here.
                watch.touch()
                tail = chunk[-2:]
        except (DecodeStalled, asyncio.TimeoutError, ClientError) as exc:
            reason, status, message = self._decode_failure(exc)
            self.metrics.count_error("decode", reason)
            LOG.warning("%s: stream ended with an error event: %s", exchange.engine_id, message)
            event = json.dumps(error_body(status, message, "proxy_error")).encode()
            # A half-sent event is closed first, so that the error event stands on its own.
            await out.write((b"" if tail == b"\n\n" else b"\n\n") + b"data: " + event + b"\n\n")
            await out.write_eof()
            return False
        await out.write_eof()
        return True

    # -- answers
    async def send(self, request, exchange, response):
        """Send a complete answer now, so that the metrics count what the client really received."""
        response.headers.update(exchange.response_headers())
        await response.prepare(request)
        exchange.response, exchange.status = response, response.status
        await response.write_eof()
        return response

    async def send_error(self, request, exchange, exc):
        if exc.status < 500:
            self.metrics.count_error("input", str(exc.status))
        LOG.info("%s: %s %s -> %s: %s", exchange.engine_id, request.method, request.path, exc.status, exc.message)
        return await self.send(request, exchange, error_response(exc.status, exc.message, exc.kind, exc.headers))

    # -- handlers
    async def handle_completion(self, request):
        exchange = Exchange(request, time.monotonic())
        try:
            return await self._complete(request, exchange)
        except asyncio.CancelledError:
            self.metrics.count_error("client", "disconnected")
            raise
        finally:
            # Only what the client received: a client gone before the status line counts as an error.
            if exchange.status is not None:
                self.metrics.count_request(request.path, exchange.status)
            LOG.info("%s %s %s -> %s in %.3fs (client request id %s, prefill %s, decode %s)", exchange.engine_id,
                     request.method, request.path, exchange.status or "client gone",
                     time.monotonic() - exchange.arrived, exchange.client_id or "-", exchange.prefill_url or "-",
                     exchange.decode_url or "-")

    async def _complete(self, request, exchange):
        try:
            self.admit(request)
        except ProxyError as exc:
            return await self.send_error(request, exchange, exc)
        self.active += 1
        self.metrics.in_progress.inc()
        try:
            body = parse_body(await self.read_body(request), request.path)
            # Prefill work for a request that no decode can finish would be thrown away.
            if not self.decode.any_healthy():
                raise self.no_decode_error()
            headers = self.engine_headers(request, exchange)
            p_status, p_type, p_data = await self.run_prefill(exchange, request.path, body, headers)
            if p_status != 200:
                # The engine refused the request itself (too long, bad parameter): the client's answer.
                self.metrics.count_error("prefill", f"http_{p_status}")
                return await self.send(request, exchange, web.Response(status=p_status, body=p_data,
                                                                       content_type=p_type))
            payload = decode_body(body, p_data)
            backend, resp = await self.open_decode(exchange, request.path, payload, headers)
            if resp.status in ENGINE_AUTH_STATUSES:
                resp.release()
                backend.inflight -= 1
                raise self.engine_auth_error("decode", backend)
            return await self.relay_decode(request, exchange, backend, resp, bool(body.get("stream")))
        except ProxyError as exc:
            return await self.send_error(request, exchange, exc)
        finally:
            self.active -= 1
            self.metrics.in_progress.dec()

    async def handle_models(self, request):
        exchange = Exchange(request, time.monotonic())
        try:
            self.check_api_key(request)
        except ProxyError as exc:
            return await self.send_error(request, exchange, exc)
        timeout = ClientTimeout(total=self.config["health_timeout"] * 5, connect=self.config["connect_timeout"])
        for pool in (self.decode, self.prefill):
            backend = pool.pick()
            if backend is None:
                continue
            try:
                async with self.session.get(f"{backend.url}/v1/models", timeout=timeout,
                                            headers=self._engine_auth_headers()) as resp:
                    if resp.status in ENGINE_AUTH_STATUSES:
                        return await self.send_error(request, exchange, self.engine_auth_error(pool.role, backend))
                    return web.Response(status=resp.status, body=await resp.read(),
                                        content_type=resp.content_type or "application/json")
            except (ClientError, OSError, asyncio.TimeoutError) as exc:
                LOG.warning("GET /v1/models on %s failed: %s", backend.url, exc)
        return error_response(503, "no backend is available to list the models", "service_unavailable")

    async def handle_health(self, _request):
        state = {"prefill": self.prefill.summary(), "decode": self.decode.summary()}
        ready = state["prefill"]["healthy"] > 0 and state["decode"]["healthy"] > 0
        state["status"] = "ok" if ready else "unavailable"
        return web.json_response(state, status=200 if ready else 503)

    async def handle_metrics(self, _request):
        return web.Response(body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})
