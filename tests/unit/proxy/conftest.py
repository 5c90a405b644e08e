"""The proxy package (roles/pd_proxy/files/erdma-pd-proxy) in front of engine stand-ins, through pytest-aiohttp.

Engines and the proxy are real aiohttp servers on loopback (aiohttp_server); the client is
aiohttp_client's. The stand-ins are fakes on purpose (see engine_standin.py); molecule/pd_e2e runs the
same package in front of real vLLM engines.
"""
import pathlib
import sys

import pytest_asyncio

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

# proxy_lab puts the package on sys.path.
from proxy_lab import Lab  # noqa: E402  pylint: disable=wrong-import-position
from engine_standin import EngineStandIn  # noqa: E402  pylint: disable=wrong-import-position
from erdma_pd_proxy.app import Proxy  # noqa: E402  pylint: disable=wrong-import-position
from erdma_pd_proxy.config import DEFAULTS, validate  # noqa: E402  pylint: disable=wrong-import-position


@pytest_asyncio.fixture
async def make_lab(aiohttp_server, aiohttp_client):
    async def start_engine(engine, port=None):
        engine.server = await aiohttp_server(engine.app(), port=port)
        engine.url = str(engine.server.make_url("")).rstrip("/")
        return engine

    async def build(n_prefill=1, n_decode=1, kv_transfer_params=None, **config):
        prefill = [await start_engine(EngineStandIn(f"p{i}", kv_transfer_params)) for i in range(n_prefill)]
        decode = [await start_engine(EngineStandIn(f"d{i}")) for i in range(n_decode)]
        settings = dict(DEFAULTS, port=0, prefill=[e.url for e in prefill], decode=[e.url for e in decode],
                        health_interval=0.2, health_timeout=0.5, api_key="", engine_api_key="")
        settings.update(config)
        assert not validate(settings), validate(settings)
        proxy = Proxy(settings)
        client = await aiohttp_client(await aiohttp_server(proxy.app()))
        return Lab(prefill, decode, proxy, client, start_engine)

    return build
