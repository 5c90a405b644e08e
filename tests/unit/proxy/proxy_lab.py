"""What the proxy tests share: the package on sys.path, the Lab of engines + proxy + client, polling."""
import asyncio
import pathlib
import sys

# No __pycache__ inside the role's files: the role copies that directory to the hosts as it is.
sys.dont_write_bytecode = True
HERE = pathlib.Path(__file__).resolve().parent
PACKAGE_DIR = HERE.parents[2] / "roles" / "pd_proxy" / "files" / "erdma-pd-proxy"
for path in (str(PACKAGE_DIR), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)


class Lab:
    """Engines, the proxy in front of them, and a client of the proxy, all in the test's event loop."""

    def __init__(self, prefill, decode, proxy, client, start_engine):
        self.prefill = prefill
        self.decode = decode
        self.proxy = proxy
        self.client = client
        self.url = str(client.make_url("")).rstrip("/")
        self.start_engine = start_engine

    async def post(self, path, body, **kw):
        async with self.client.post(path, json=body, **kw) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            return resp.status, await resp.text()  # a stream of server-sent events

    async def get_text(self, path, **kw):
        async with self.client.get(path, **kw) as resp:
            return resp.status, await resp.text()


async def wait_until(predicate, timeout=5.0):
    """Poll until predicate() is true; the health checker works on its own clock."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)
