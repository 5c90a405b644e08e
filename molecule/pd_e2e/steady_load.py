"""Steady client load through the PD proxy while something changes behind it (the rolling restart).

    python steady_load.py --proxy URL --key-file FILE --stop-file FILE --out FILE

Sends small completions one after another (alternately streamed and not) until the stop file exists,
samples the proxy's /health between requests, and writes a JSON summary: requests, failures (status
and message of each), the fewest healthy decode backends seen, and each decode backend's share of the
requests (from the proxy's pd_proxy_backend_requests_total). Exits 0 whatever happened: the caller
asserts on the summary.
"""
import argparse
import json
import pathlib
import re
import time
import urllib.error
import urllib.request
import uuid

BACKEND_REQUESTS = re.compile(r'^pd_proxy_backend_requests_total\{backend="([^"]+)",role="decode"\} ([0-9.e+]+)$', re.M)


def call(method, url, body=None, key=None, timeout=60):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (OSError, ValueError) as exc:
        return -1, f"{exc.__class__.__name__}: {exc}"


def decode_split(proxy):
    status, text = call("GET", proxy + "/metrics")
    return {url: float(count) for url, count in BACKEND_REQUESTS.findall(text)} if status == 200 else {}


def one_request(proxy, key, streamed):
    body = {"model": "tiny", "prompt": f"{uuid.uuid4().hex[:8]} rolling restart under load, request",
            "max_tokens": 4, "ignore_eos": True, "temperature": 0, "stream": streamed}
    status, text = call("POST", proxy + "/v1/completions", body, key=key)
    # A streamed answer is 200 from its first byte: an error later arrives as an error event in the stream.
    if status == 200 and streamed and ('"error"' in text or "data: [DONE]" not in text):
        return -2, text[-300:]
    return status, text[:300]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy", required=True)
    parser.add_argument("--key-file", required=True, type=pathlib.Path)
    parser.add_argument("--stop-file", required=True, type=pathlib.Path)
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--max-seconds", type=float, default=1800)
    args = parser.parse_args()
    key = args.key_file.read_text().split()[0]

    before = decode_split(args.proxy)
    started = time.monotonic()
    requests, failures, fewest_healthy = 0, [], None
    while not args.stop_file.exists() and time.monotonic() - started < args.max_seconds:
        status, text = call("GET", args.proxy + "/health", timeout=10)
        try:
            healthy = json.loads(text)["decode"]["healthy"] if status in (200, 503) else None
        except (ValueError, KeyError, TypeError):
            healthy = None
        if healthy is not None:
            fewest_healthy = healthy if fewest_healthy is None else min(fewest_healthy, healthy)
        sent = time.monotonic()
        status, text = one_request(args.proxy, key, streamed=requests % 2 == 1)
        requests += 1
        if status != 200:
            failures.append({"at_s": round(sent - started, 1), "status": status, "answer": text})
        time.sleep(0.5)
    after = decode_split(args.proxy)
    args.out.write_text(json.dumps({
        "requests": requests, "failures": failures, "seconds": round(time.monotonic() - started, 1),
        "fewest_healthy_decodes": fewest_healthy,
        "decode_split": {url: after[url] - before.get(url, 0.0) for url in after},
    }, indent=1))


if __name__ == "__main__":
    main()
