"""What the PD proxy costs: latency added and throughput, versus calling the engine directly.

Engines are fast OpenAI-compatible stand-ins (tests/unit/proxy/engine_standin.py) so that the figures
measure the proxy, not a model. One run measures, at concurrency 1 and 32, streamed completions sent:

  direct     straight to the decode stand-in (one engine call: the floor)
  pd_proxy   through the erdma-pd-proxy package (roles/pd_proxy/files/erdma-pd-proxy), with an API key
             as the role runs it (prefill call + decode call)
  lmcache    through LMCache's disagg_proxy_server.py, when --lmcache-proxy is given, patched as the
             field guide says (its wait_decode_kv_ready line commented out) and run with
             --lmcache-python (a Python with fastapi, uvicorn, httpx, msgspec, numpy, pyzmq)

Everything listens on 127.0.0.1; request counts are bounded. Run from the repository root:

    .venv/bin/python bench/proxy_overhead.py [--lmcache-proxy FILE --lmcache-python PYTHON] [--json OUT]
"""
import argparse
import asyncio
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from aiohttp import ClientSession, ClientTimeout, TCPConnector

ROOT = pathlib.Path(__file__).resolve().parent.parent
STANDIN = ROOT / "tests" / "unit" / "proxy" / "engine_standin.py"
PROXY_PACKAGE = ROOT / "roles" / "pd_proxy" / "files" / "erdma-pd-proxy"
# The key the benchmark's proxy requires, as the role deploys it: clients authenticate on every request.
BENCH_API_KEY = "bench-" + os.urandom(16).hex()
GUIDE_LINE = "await wait_decode_kv_ready(req_id, num_tp_rank)"

# LMCache's proxy imports two names from lmcache itself (a logger, a message type for its ZMQ signal);
# the benchmark gives it these two, not the whole of lmcache with torch.
LMCACHE_SHIM = {
    "lmcache/__init__.py": "",
    "lmcache/logging.py": "import logging\n\ndef init_logger(name):\n    return logging.getLogger(name)\n",
    "lmcache/v1/__init__.py": "",
    "lmcache/v1/storage_backend/__init__.py": "",
    "lmcache/v1/storage_backend/pd_backend.py":
        "import msgspec\n\nclass PDMsg(msgspec.Struct):\n    req_id: str = ''\n",
}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError as exc:
            if getattr(exc, "code", None):  # any HTTP answer means the server is up
                return
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout}s")


def start(cmd, env=None):
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def start_engines():
    ports = [free_port(), free_port()]
    proc = start([sys.executable, str(STANDIN), "--port", str(ports[0]), "--port", str(ports[1])])
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    for url in urls:
        wait_http(url + "/health")
    return proc, urls


def start_pd_proxy(prefill, decode, workdir):
    port = free_port()
    config = pathlib.Path(workdir) / "pd_proxy.json"
    config.write_text(json.dumps({"port": port, "prefill": [prefill], "decode": [decode],
                                  "log_level": "WARNING", "require_api_key": True}))
    env = dict(os.environ, PYTHONPATH=str(PROXY_PACKAGE), PYTHONDONTWRITEBYTECODE="1",
               PD_PROXY_API_KEY=BENCH_API_KEY)
    proc = start([sys.executable, "-m", "erdma_pd_proxy", "--config", str(config)], env=env)
    wait_http(f"http://127.0.0.1:{port}/health")
    return proc, f"http://127.0.0.1:{port}"


def start_lmcache(script, python, prefill, decode, workdir):
    """LMCache's proxy as the guide runs it: the blocking wait commented out."""
    text = pathlib.Path(script).read_text()
    if GUIDE_LINE not in text:
        raise SystemExit(f"{script}: the line the guide comments out ({GUIDE_LINE}) is not there")
    patched = pathlib.Path(workdir) / "disagg_proxy_server.py"
    patched.write_text(text.replace(GUIDE_LINE, "pass  # " + GUIDE_LINE, 1))
    for rel, body in LMCACHE_SHIM.items():
        path = pathlib.Path(workdir) / "shim" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    port, zmq_port = free_port(), free_port()
    p_host, p_port = prefill.rsplit("//", 1)[1].split(":")
    d_host, d_port = decode.rsplit("//", 1)[1].split(":")
    env = dict(os.environ, PYTHONPATH=str(pathlib.Path(workdir) / "shim"))
    proc = start([python, str(patched), "--host", "127.0.0.1", "--port", str(port),
                  "--prefiller-host", p_host, "--prefiller-port", p_port, "--decoder-host", d_host,
                  "--decoder-port", d_port, "--proxy-host", "127.0.0.1", "--proxy-port", str(zmq_port)], env=env)
    wait_http(f"http://127.0.0.1:{port}/v1/models")  # 404 is an answer: the server is up
    return proc, f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------- load
async def one_request(session, url, body):
    started = time.perf_counter()
    first = None
    async with session.post(url + "/v1/completions", json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}: {(await resp.text())[:200]}")
        async for _chunk in resp.content.iter_any():
            if first is None:
                first = time.perf_counter() - started
    return time.perf_counter() - started, first


async def load(url, concurrency, count, body):
    """count requests, at most `concurrency` at a time; per-request latency and TTFT, and wall time."""
    results = []
    queue = iter(range(count))
    timeout = ClientTimeout(total=60)
    headers = {"Authorization": f"Bearer {BENCH_API_KEY}"}  # the stand-ins and LMCache's proxy ignore it
    async with ClientSession(connector=TCPConnector(limit=0), timeout=timeout, headers=headers) as session:
        async def worker():
            for _index in queue:
                results.append(await one_request(session, url, body))
        for _warm_up in range(min(20, count)):  # connections open, code paths hot
            await one_request(session, url, body)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _worker in range(concurrency)))
        wall = time.perf_counter() - started
    return results, wall


def percentile(values, pct):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def summarise(name, concurrency, results, wall):
    latency = [r[0] * 1000 for r in results]
    ttft = [r[1] * 1000 for r in results]
    return {"target": name, "concurrency": concurrency, "requests": len(results),
            "p50_ms": statistics.median(latency), "p99_ms": percentile(latency, 99),
            "ttft_p50_ms": statistics.median(ttft), "rps": len(results) / wall}


def table(rows):
    floor = {(r["concurrency"]): r for r in rows if r["target"] == "direct"}
    lines = ["| target | concurrency | requests | p50 ms | p99 ms | added p50 ms | added p99 ms | TTFT p50 ms | req/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        base = floor[r["concurrency"]]
        added = ("—", "—") if r["target"] == "direct" else \
            (f"{r['p50_ms'] - base['p50_ms']:+.2f}", f"{r['p99_ms'] - base['p99_ms']:+.2f}")
        lines.append(f"| {r['target']} | {r['concurrency']} | {r['requests']} | {r['p50_ms']:.2f} | "
                     f"{r['p99_ms']:.2f} | {added[0]} | {added[1]} | {r['ttft_p50_ms']:.2f} | {r['rps']:.0f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests-c1", type=int, default=300, help="requests measured at concurrency 1")
    parser.add_argument("--requests-c32", type=int, default=2000, help="requests measured at concurrency 32")
    parser.add_argument("--max-tokens", type=int, default=16, help="tokens streamed per answer")
    parser.add_argument("--lmcache-proxy", help="LMCache's examples/disagg_prefill/disagg_proxy_server.py")
    parser.add_argument("--lmcache-python", default=sys.executable, help="Python that can run it")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    body = {"model": "tiny", "prompt": "one two three four five six seven eight", "max_tokens": args.max_tokens,
            "stream": True}
    procs = []
    with tempfile.TemporaryDirectory(prefix="pd-proxy-bench-") as workdir:
        try:
            engines, (prefill, decode) = start_engines()
            procs.append(engines)
            targets = [("direct", decode)]
            proc, url = start_pd_proxy(prefill, decode, workdir)
            procs.append(proc)
            targets.append(("pd_proxy", url))
            if args.lmcache_proxy:
                proc, url = start_lmcache(args.lmcache_proxy, args.lmcache_python, prefill, decode, workdir)
                procs.append(proc)
                targets.append(("lmcache", url))
            rows = []
            for concurrency, count in ((1, args.requests_c1), (32, args.requests_c32)):
                for name, url in targets:
                    results, wall = asyncio.run(load(url, concurrency, count, body))
                    rows.append(summarise(name, concurrency, results, wall))
                    print(f"{name:<9} c={concurrency:<3} {rows[-1]['rps']:8.0f} req/s", file=sys.stderr, flush=True)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=10)
    print(f"Streamed completions of {args.max_tokens} tokens; {os.cpu_count()} CPUs; engines are stand-ins.")
    print(table(rows))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
