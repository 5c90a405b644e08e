#!/usr/bin/env python
"""Send one completion through the lab's PD proxy and show what happened on prefill and decode.

    .venv/bin/python lab/demo.py --inventory inventories/lab      (what `make demo` runs after site.yml)

The proxy's address comes from the inventory (the proxy host's lab_ip, pd_proxy_port); the engines'
addresses from the proxy itself (GET /health lists its backends); the API key from the environment
(PD_API_KEY) or the file that the roles generated beside the inventory (credentials/pd_api_key.txt).
Stdlib only.
"""
import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROMPT = ("Prefill and decode run on different machines: the prefill engine reads the whole prompt once and "
          "stores its key-value cache in Mooncake over the network, and the decode engine loads that cache "
          "instead of computing it again, then writes the answer token by token. Tell me why this helps when "
          "prompts are long and answers are short, and what the proxy in front of both engines does.")


def inventory_proxy(inventory):
    """(address, port) of the first host of the proxy group, read with ansible-inventory."""
    tool = pathlib.Path(sys.executable).parent / "ansible-inventory"
    out = subprocess.run([str(tool if tool.exists() else "ansible-inventory"), "-i", str(inventory), "--list"],
                         capture_output=True, text=True, check=False, cwd=ROOT)
    if out.returncode:
        sys.exit(f"demo: cannot read the inventory {inventory}: {out.stderr.strip()}")
    data = json.loads(out.stdout)
    hosts = data.get("proxy", {}).get("hosts", [])
    if not hosts:
        sys.exit(f"demo: the inventory {inventory} has no host in the group proxy")
    hostvars = data["_meta"]["hostvars"][hosts[0]]
    address = hostvars.get("lab_ip") or hostvars.get("ansible_host") or hosts[0]
    port = hostvars.get("pd_proxy_port", 9000)
    return address, int(port) if str(port).isdigit() else 9000


def api_key(inventory):
    """The key clients send (PD_API_KEY, else the one generated beside the inventory), or "" for none."""
    if os.environ.get("PD_API_KEY"):
        return os.environ["PD_API_KEY"]
    path = ROOT / inventory / "credentials" / "pd_api_key.txt"
    return path.read_text().split()[0] if path.is_file() else ""


def http(method, url, body=None, timeout=120, key=""):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text, name):
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.eE+-]+)$", re.M)
    return sum(float(v) for v in pattern.findall(text))


def scrape(url):
    status, text = http("GET", url + "/metrics", timeout=10)
    return text if status == 200 else ""


def long_enough_prompt(p_url, d_metrics, max_tokens):
    """PROMPT repeated until it spans two KV blocks and a bit (KV moves in whole blocks), within the context."""
    match = re.search(r'vllm:cache_config_info\{[^}]*[{,]block_size="(\d+)"', d_metrics)
    block = int(match.group(1)) if match else 16
    # The time first: a prefix that no engine has cached yet, so that every run shows the whole path.
    first = f"[{time.strftime('%H:%M:%S')}] {PROMPT}"
    best, best_count, prompt = first, 0, first
    for _repeat in range(8):
        status, text = http("POST", p_url + "/tokenize", {"model": "tiny", "prompt": prompt})
        info = json.loads(text) if status == 200 else {}
        if not info or info["count"] + max_tokens > info.get("max_model_len", 512):
            break
        best, best_count = prompt, info["count"]
        if best_count > 2 * block:
            break
        prompt = prompt + " " + PROMPT
    return best, best_count, block


def stream_completion(proxy, body, key):
    """The answer's text, time to first token and total time, as a client of the proxy sees them."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(proxy + "/v1/completions", data=json.dumps(dict(body, stream=True)).encode(),
                                 headers=headers, method="POST")
    started = time.monotonic()
    first, parts = None, []
    with urllib.request.urlopen(req, timeout=300) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            if first is None:
                first = time.monotonic() - started
            parts.append(json.loads(line[6:])["choices"][0].get("text", ""))
    return "".join(parts), first or 0.0, time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", default="inventories/lab")
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()

    address, port = inventory_proxy(args.inventory)
    proxy = f"http://{address}:{port}"
    try:
        status, text = http("GET", proxy + "/health", timeout=10)
    except OSError as exc:
        sys.exit(f"demo: the PD proxy at {proxy} does not answer ({exc}). Bring the lab up and deploy it first: "
                 "`make lab` (or `make lab-up site`).")
    health = json.loads(text)
    if status != 200:
        sys.exit(f"demo: the PD proxy at {proxy} has no healthy prefill or decode engine: {text}")
    p_url = health["prefill"]["backends"][0]["url"]
    d_url = health["decode"]["backends"][0]["url"]

    before = {"p": scrape(p_url), "d": scrape(d_url)}
    prompt, tokens, block = long_enough_prompt(p_url, before["d"], args.max_tokens)
    body = {"model": "tiny", "prompt": prompt, "max_tokens": args.max_tokens, "temperature": 0,
            "ignore_eos": True}
    try:
        answer, ttft, total = stream_completion(proxy, body, api_key(args.inventory))
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            sys.exit(f"demo: the PD proxy wants its API key: set PD_API_KEY or keep the generated key in "
                     f"{args.inventory}/credentials/pd_api_key.txt")
        raise
    after = {"p": scrape(p_url), "d": scrape(d_url)}

    def delta(node, name):
        return metric(after[node], name) - metric(before[node], name)

    print(f"PD proxy {proxy}: prefill {p_url}, decode {d_url}")
    print(f"prompt: {prompt[:100]}... ({tokens} tokens)")
    print(f"answer: {answer.strip()!r}")
    print("        (the lab's tiny model has random weights: the words are noise, the path is the point)")
    print("summary:")
    print(f"  prefill  prompt tokens computed on P     {delta('p', 'vllm:prompt_tokens_total'):6.0f}")
    print(f"  decode   prompt tokens loaded by D       {delta('d', 'vllm:external_prefix_cache_hits_total'):6.0f}"
          f"   (vllm:external_prefix_cache_hits_total: KV that D took from Mooncake, in blocks of {block})")
    print(f"  decode   tokens generated on D           {delta('d', 'vllm:generation_tokens_total'):6.0f}")
    print(f"  timings  first token {ttft * 1000:.0f} ms, whole answer {total * 1000:.0f} ms (through the proxy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
