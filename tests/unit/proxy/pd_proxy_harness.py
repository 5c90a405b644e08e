"""Starts the real proxy (roles/pd_proxy/files/pd_proxy.py) in front of engine stand-ins, on loopback."""
import asyncio
import contextlib
import importlib.util
import pathlib
import sys

from aiohttp import ClientSession, web

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from engine_standin import EngineStandIn  # noqa: E402  pylint: disable=wrong-import-position

PROXY_FILE = HERE.parents[2] / "roles" / "pd_proxy" / "files" / "pd_proxy.py"


def load_proxy_module():
    spec = importlib.util.spec_from_file_location("pd_proxy", PROXY_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pd_proxy = load_proxy_module()


class Lab:
    """Engines, the proxy in front of them, and a client session, all in one event loop."""

    def __init__(self, prefill, decode, proxy, runner, url, session):
        self.prefill = prefill
        self.decode = decode
        self.proxy = proxy
        self.runner = runner
        self.url = url
        self.session = session

    async def post(self, path, body, **kw):
        async with self.session.post(self.url + path, json=body, **kw) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()  # a stream of server-sent events

    async def get_text(self, path):
        async with self.session.get(self.url + path) as resp:
            return resp.status, await resp.text()


@contextlib.asynccontextmanager
async def lab(n_prefill=1, n_decode=1, kv_transfer_params=None, **config):
    prefill = [await EngineStandIn(f"p{i}", kv_transfer_params).start() for i in range(n_prefill)]
    decode = [await EngineStandIn(f"d{i}").start() for i in range(n_decode)]
    settings = dict(pd_proxy.DEFAULTS, port=0, prefill=[e.url for e in prefill],
                    decode=[e.url for e in decode], health_interval=0.2, health_timeout=0.5)
    settings.update(config)
    assert not pd_proxy.validate(settings)
    proxy = pd_proxy.Proxy(settings)
    runner = web.AppRunner(proxy.app(), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # pylint: disable=protected-access
    session = ClientSession()
    try:
        yield Lab(prefill, decode, proxy, runner, f"http://127.0.0.1:{port}", session)
    finally:
        await session.close()
        await runner.cleanup()
        for engine in prefill + decode:
            await engine.stop()


def run(coro):
    """Each test gets its own event loop: nothing leaks from one test to the next."""
    return asyncio.run(asyncio.wait_for(coro, timeout=30))


async def wait_until(predicate, timeout=5.0):
    """Poll until predicate() is true; the health checker works on its own clock."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)
