"""A stand-in for a vLLM engine: a small OpenAI-compatible HTTP server for the proxy's tests and benchmark.

It is a fake on purpose: what is under test is the proxy's logic (routing, retries, streaming,
cancellation), which needs backends that can be told to fail, stall or go away on cue. The real vLLM
path is proven by the molecule scenario pd_e2e. Every request an engine receives is recorded.
"""
import argparse
import asyncio
import gzip
import json
import time

from aiohttp import web


class EngineStandIn:
    """One fake engine. Behaviour knobs are plain attributes that a test may change at any time."""

    def __init__(self, name="engine", kv_transfer_params=None):
        self.name = name
        self.kv_transfer_params = kv_transfer_params  # returned in answers, as P2P connectors do
        self.healthy = True        # GET /health answers 200 or 503
        self.fail_status = None    # answer completions with this status instead
        self.delay = 0.0           # seconds before answering
        self.chunk_delay = 0.0     # seconds between streamed chunks
        self.stall_after = None    # streamed chunks sent before the stream goes silent (a stalled engine)
        self.gzip = False          # compress non-streamed answers whatever the client accepts
        self.api_key = ""          # when set, /v1/* wants "Authorization: Bearer <api_key>", as vLLM does
        self.health_headers = []   # headers of every GET /health
        self.received = []         # (path, body, headers) of every completion request
        self.cancelled = 0         # requests whose client went away before the answer was complete
        self.finished = 0          # requests answered completely
        self.runner = None
        self.url = None

    # -- server lifecycle
    def app(self):
        app = web.Application(middlewares=[self.check_api_key])
        app.router.add_post("/v1/completions", self.completion)
        app.router.add_post("/v1/chat/completions", self.completion)
        app.router.add_post("/tokenize", self.tokenize)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        return app

    async def start(self, host="127.0.0.1", port=0):
        self.runner = web.AppRunner(self.app(), handler_cancellation=True, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()  # pylint: disable=protected-access
        self.url = f"http://{bound[0]}:{bound[1]}"
        return self

    async def stop(self):
        if self.runner:
            await self.runner.cleanup()
            self.runner = None

    # -- handlers
    @web.middleware
    async def check_api_key(self, request, handler):
        if self.api_key and request.path.startswith("/v1/") and \
                request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": "Unauthorized"}, status=401)
        return await handler(request)

    async def health(self, request):
        self.health_headers.append(request.headers.copy())
        return web.Response(status=200 if self.healthy else 503)

    async def tokenize(self, request):
        """One token per word: enough for proxies (LMCache's) that tokenize before prefill."""
        body = await request.json()
        text = body.get("prompt") or json.dumps(body.get("messages"))
        return web.json_response({"tokens": list(range(len(str(text).split()))), "count": 0})

    async def models(self, _request):
        return web.json_response({"object": "list", "data": [{"id": "tiny", "object": "model",
                                                              "owned_by": self.name}]})

    async def completion(self, request):
        body = await request.json()
        self.received.append((request.path, body, request.headers.copy()))
        try:
            # A request may carry its own delay: the proxy forwards unknown fields untouched.
            delay = body.get("standin_delay", self.delay)
            if delay:
                await asyncio.sleep(delay)
            if self.fail_status:
                return web.json_response({"error": {"message": f"{self.name} told to fail"}},
                                         status=self.fail_status)
            tokens = [f"{self.name}-t{i}" for i in range(body.get("max_tokens") or 16)]
            if body.get("stream"):
                return await self._stream(request, body, tokens)
            answer = self._answer(request.path, body, tokens)
            self.finished += 1
            if self.gzip:
                return web.Response(body=gzip.compress(json.dumps(answer).encode()), content_type="application/json",
                                    headers={"Content-Encoding": "gzip"})
            return web.json_response(answer)
        except (asyncio.CancelledError, ConnectionResetError):
            self.cancelled += 1
            raise

    def _answer(self, path, body, tokens):
        text = " ".join(tokens)
        choice = {"index": 0, "finish_reason": "length"}
        if path.endswith("chat/completions"):
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        answer = {"id": f"cmpl-{self.name}-{len(self.received)}", "object": "text_completion",
                  "created": int(time.time()), "model": body.get("model"), "choices": [choice],
                  "usage": {"prompt_tokens": len(str(body.get("prompt", ""))), "completion_tokens": len(tokens)}}
        if self.kv_transfer_params is not None:
            answer["kv_transfer_params"] = self.kv_transfer_params
        elif (body.get("kv_transfer_params") or {}).get("ret_first_tok"):
            answer["kv_transfer_params"] = {"first_tok": 7}  # what LMCache's prefill hands its proxy
        return answer

    async def _stream(self, request, body, tokens):
        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        for index, token in enumerate(tokens):
            if index == self.stall_after:
                await asyncio.sleep(3600)
            chunk = {"object": "text_completion", "model": body.get("model"),
                     "choices": [{"index": 0, "text": token + " ", "finish_reason": None}]}
            await out.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
        await out.write(b"data: [DONE]\n\n")
        await out.write_eof()
        self.finished += 1
        return out


async def serve_forever(names, host, ports):
    engines = [await EngineStandIn(name).start(host, port) for name, port in zip(names, ports)]
    print(" ".join(e.url for e in engines), flush=True)
    await asyncio.Event().wait()


def main():
    """Run stand-ins as their own process (the benchmark keeps engines off the client's event loop)."""
    parser = argparse.ArgumentParser(description="OpenAI-compatible stand-ins for vLLM engines")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, action="append", required=True, help="one per engine")
    args = parser.parse_args()
    names = [f"e{i}" for i in range(len(args.port))]
    asyncio.run(serve_forever(names, args.host, args.port))


if __name__ == "__main__":
    main()
