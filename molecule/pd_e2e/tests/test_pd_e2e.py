"""The PD path for real: a prompt through the proxy is prefilled on P, and D loads the KV it did not compute.

Runs after the side effect (Mooncake master restarted, roles re-run), so every test here also proves that
the path came back. The decode engine's fault (killed mid-stream, 503, back by itself, loading KV
again) is in test_pd_faults.py. HTTP goes from this machine to the nodes' addresses on the scenario network.
"""
import json
import os
import pathlib
import re
import subprocess
import sys
import uuid

import pytest

# The demo's HTTP and Prometheus helpers: one copy serves `make lab` and this proof.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "lab"))
from demo import http, metric  # noqa: E402  pylint: disable=wrong-import-position
from lab_names import DECODE, DECODE2, MASTER, PREFILL  # noqa: E402  pylint: disable=wrong-import-position
from fault_kit import PROXY_PORT, external_hits, node_ip  # noqa: E402  pylint: disable=wrong-import-position

testinfra_hosts = [f"podman://{MASTER}"]

WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly judge "
         "boxing matches near an old stone bridge").split()


@pytest.fixture(scope="module")
def proxy():
    return f"http://{node_ip(MASTER)}:{PROXY_PORT}"


@pytest.fixture(scope="module")
def api_key(host):
    """The key the roles generated on the control node, as the proxy's root-only environment file has it."""
    env_file = host.file("/etc/erdma-pd/pd-proxy.env")
    assert (env_file.user, env_file.group, env_file.mode) == ("root", "root", 0o600)
    match = re.search(r'^PD_PROXY_API_KEY="?([A-Za-z0-9]+)"?$', env_file.content_string, re.M)
    assert match, "no PD_PROXY_API_KEY in the proxy's environment file"
    generated = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory" / "credentials" / "pd_api_key.txt"
    assert oct(generated.stat().st_mode & 0o777) == oct(0o600) and oct(generated.parent.stat().st_mode & 0o777) == oct(0o700)
    assert generated.read_text().split()[0] == match.group(1)
    return match.group(1)


@pytest.fixture(scope="module")
def engines(proxy):
    """The engine URLs, as the proxy knows them (rendered by the role from the inventory)."""
    status, text = http("GET", proxy + "/health")
    assert status == 200, f"proxy not ready: {text}"
    health = json.loads(text)
    return {"prefill": health["prefill"]["backends"][0]["url"], "decode": health["decode"]["backends"][0]["url"],
            "decodes": [b["url"] for b in health["decode"]["backends"]]}


def make_prompt(engine_url, tokens=200):
    """A prompt no engine has seen (a fresh prefix), about `tokens` long in the model's tokenizer."""
    words = [uuid.uuid4().hex[:8]]
    while True:
        words += WORDS
        status, text = http("POST", engine_url + "/tokenize", {"model": "tiny", "prompt": " ".join(words)})
        assert status == 200, text
        count = json.loads(text)["count"]
        if count >= tokens:
            return " ".join(words), count


def completion(url, prompt, key, max_tokens=8):
    body = {"model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "seed": 1234,
            "logprobs": 1, "ignore_eos": True}
    status, text = http("POST", url + "/v1/completions", body, key=key)
    assert status == 200, f"{url}: {status} {text}"
    return json.loads(text)["choices"][0]


def block_size(metrics_text):
    match = re.search(r'vllm:cache_config_info\{[^}]*[{,]block_size="(\d+)"', metrics_text)
    assert match, "the decode engine's /metrics has no vllm:cache_config_info block_size"
    return int(match.group(1))


def test_proxy_runs_hardened_on_the_master_address(host):
    unit = host.file("/etc/systemd/system/pd-proxy.service").content_string
    assert "Ansible managed" in unit and "NoNewPrivileges=yes" in unit and "ProtectSystem=strict" in unit
    assert host.service("pd-proxy").is_running
    # The package the role installed, the one the unit runs, with the drop-in's memory limit.
    assert host.check_output("/opt/pd-proxy/venv/bin/pip show erdma-pd-proxy").startswith("Name: erdma-pd-proxy")
    assert "ExecStart=/opt/pd-proxy/venv/bin/pd-proxy --config /etc/pd-proxy/config.json" in unit
    assert host.check_output("systemctl show pd-proxy -p MemoryMax") == "MemoryMax=1073741824"
    assert not host.file("/opt/pd-proxy/pd_proxy.py").exists
    local = [line.split()[3] for line in host.check_output(f"ss -Hltn 'sport = :{PROXY_PORT}'").splitlines()]
    assert local == [f"{node_ip(MASTER)}:{PROXY_PORT}"]


def test_prompt_is_prefilled_on_p_and_its_kv_loaded_by_d(host, proxy, engines, api_key):  # pylint: disable=unused-argument
    # (host: keeps pytest from reordering; this proof runs before the decode engine is stopped)
    p_before = http("GET", engines["prefill"] + "/metrics")[1]
    d_before = http("GET", engines["decode"] + "/metrics")[1]
    hits_before = external_hits(engines["decodes"])
    # KV moves in whole blocks and the last prompt token is always computed on D: a prompt of two
    # blocks and a bit must load at least its first two blocks.
    block = block_size(d_before)
    prompt, tokens = make_prompt(engines["prefill"], tokens=2 * block + 1)

    through_proxy = completion(proxy, prompt, api_key)

    p_after = http("GET", engines["prefill"] + "/metrics")[1]
    prefilled = metric(p_after, "vllm:prompt_tokens_total") - metric(p_before, "vllm:prompt_tokens_total")
    loaded = external_hits(engines["decodes"]) - hits_before
    print(f"prompt {tokens} tokens; P prefilled {prefilled:.0f}; D loaded {loaded:.0f} from Mooncake (block {block})")
    assert prefilled == tokens, "P did not prefill the prompt exactly once"
    assert tokens - block <= loaded <= tokens, "D did not load the prompt's KV from the store"

    # The same request to one engine alone: the PD answer must be the one a single engine gives.
    alone = completion(engines["prefill"], prompt, api_key)
    assert through_proxy["text"] == alone["text"]
    pd_logprobs = through_proxy["logprobs"]["token_logprobs"][:4]
    single_logprobs = alone["logprobs"]["token_logprobs"][:4]
    assert through_proxy["logprobs"]["tokens"][:4] == alone["logprobs"]["tokens"][:4]
    assert all(abs(a - b) < 1e-2 for a, b in zip(pd_logprobs, single_logprobs)), (pd_logprobs, single_logprobs)


def backend_split(proxy):
    text = http("GET", proxy + "/metrics")[1]
    return {url: float(n) for url, n in re.findall(
        r'^pd_proxy_backend_requests_total\{backend="([^"]+)",role="decode"\} ([0-9.e+]+)$', text, re.M)}


def test_both_decodes_load_kv_from_the_store_and_the_proxy_balances_them(host, proxy, engines, api_key):  # pylint: disable=unused-argument
    """xPyD: the venv decode and the container decode (e2e-decode2, podman) each load the KV that the venv
    prefill stored in Mooncake, and the proxy shares the requests between them (its per-backend counter)."""
    assert len(engines["decodes"]) == 2, engines
    before_split = backend_split(proxy)
    before_hits = {url: metric(http("GET", url + "/metrics")[1], "vllm:external_prefix_cache_hits_total")
                   for url in engines["decodes"]}
    block = block_size(http("GET", engines["decodes"][0] + "/metrics")[1])
    for _attempt in range(8):
        prompt, _tokens = make_prompt(engines["prefill"], tokens=2 * block + 1)
        completion(proxy, prompt, api_key, max_tokens=4)
    split = {url: backend_split(proxy).get(url, 0.0) - before_split.get(url, 0.0) for url in engines["decodes"]}
    hits = {url: metric(http("GET", url + "/metrics")[1], "vllm:external_prefix_cache_hits_total") - before_hits[url]
            for url in engines["decodes"]}
    print(f"8 requests through the proxy: decode split {split}; KV tokens each decode loaded from Mooncake {hits}")
    assert sum(split.values()) == 8
    assert all(n >= 2 for n in split.values()), f"the proxy did not balance the decodes: {split}"
    assert all(n >= 2 * block for n in hits.values()), f"a decode did not load the prompts' KV from the store: {hits}"


def test_proxy_metrics_saw_the_requests(host, proxy):  # pylint: disable=unused-argument
    status, text = http("GET", proxy + "/metrics")
    assert status == 200
    assert metric(text, "pd_proxy_requests_total") >= 1
    assert metric(text, "pd_proxy_prefill_seconds_count") >= 1
    assert metric(text, "pd_proxy_decode_seconds_count") >= 1


def test_api_key_guards_the_proxy_and_each_engine(host, proxy, engines, api_key):  # pylint: disable=unused-argument
    body = {"model": "tiny", "prompt": "one two three", "max_tokens": 2}
    for url in (proxy, engines["prefill"], engines["decode"]):
        for key in ("", "wrong-" + api_key):
            status, text = http("POST", url + "/v1/completions", body, key=key)
            assert status == 401, f"{url} answered {status} without the right key: {text}"
        assert http("GET", url + "/v1/models")[0] == 401
    status, text = http("GET", proxy + "/v1/models", key=api_key)
    assert status == 200 and json.loads(text)["data"][0]["id"] == "tiny"


def test_api_key_is_in_no_log_no_command_line_and_no_world_readable_file(host, api_key):
    log = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "ansible.log"
    text = log.read_text()
    assert "Run the PD proxy" in text and "pd_proxy" in text, "the ansible log of the scenario is not complete"
    assert api_key not in text, "the API key is in the log of the ansible run"
    for name in (MASTER, PREFILL, DECODE):
        node = host.get_host(f"podman://{name}")
        # Files: every file that holds the key must be readable by root alone.
        found = node.run(f"grep -rlF --exclude-dir=venv --exclude-dir=proc -e {api_key} /etc /opt /run /tmp /var/log "
                         "/var/tmp /var/lib/erdma-pd /srv /root /home 2>/dev/null").stdout.split()
        assert found, f"{name}: the key is nowhere on the node (the services did not get it)"
        for path in found:
            assert node.file(path).mode & 0o077 == 0, f"{name}: {path} holds the key and others can read it"
        assert api_key not in node.check_output("journalctl --no-pager -o cat"), f"{name}: the key is in the journal"
        assert api_key not in node.check_output("cat /proc/[0-9]*/cmdline | tr '\\0' ' '"), \
            f"{name}: the key is on a command line"


def exposure(node, unit):
    out = subprocess.run(["podman", "exec", node, "systemd-analyze", "security", "--no-pager", unit],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return float(out.strip().splitlines()[-1].split(":")[1].split()[0])


@pytest.mark.parametrize("node,unit", [(MASTER, "pd-proxy"), (MASTER, "mooncake-master"),
                                       (PREFILL, "vllm-pd-prefill"), (DECODE, "vllm-pd-decode")])
def test_exposure_score_of_each_service_in_the_lab(node, unit):
    """systemd-analyze security on the lab nodes: no seccomp-based options in an unprivileged container (the
    real-host scores are checked offline in tests/unit/plugins/plugin_utils/test_systemd_unit.py)."""
    assert exposure(node, unit) <= 6.0


def test_acceptance_report_passes_with_the_pd_path_and_its_kv_hits():
    """playbooks/acceptance.yml (side effect): one report of the whole fleet, here without RDMA hardware."""
    directory = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "acceptance"
    report = json.loads((directory / "acceptance.json").read_text())
    assert report["passed"] and report["problems"] == [], report["problems"]
    assert sorted(e["stage"] for e in report["engines"]) == ["decode", "decode", "prefill"]
    assert all(e["ready"] for e in report["engines"])
    assert report["store"]["ok"] and report["store"]["protocol"] == "tcp"
    assert report["completion"]["status"] == 200 and report["completion"]["external_hits"] > 0
    # No NIC in the lab: every engine host is reported, none expected to have RDMA, the link not measured.
    verify = report["verify"]
    assert sorted(h["host"] for h in verify["hosts"]) == sorted([DECODE, DECODE2, PREFILL])
    links = sorted((link["client"], link["server"], link["result"]) for link in verify["links"])
    assert links == [(PREFILL, DECODE, "skipped"), (PREFILL, DECODE2, "skipped")]
    markdown = (directory / "acceptance.md").read_text()
    assert "**PASSED**" in markdown and "## Links (prefill -> decode)" in markdown
