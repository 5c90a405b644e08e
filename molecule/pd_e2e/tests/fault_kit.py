"""What the fault and load tests of pd_e2e share: the lab's addresses, bounded clients, engine counters.

Every client call here has a time bound of its own, so that a hang shows as a failed assertion naming the
request, never as a stuck CI job. The engines and the master are the real ones of the converged lab.
"""
import http.client as http_client
import json
import os
import pathlib
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid

# The demo's HTTP and Prometheus helpers: one copy serves `make lab` and these proofs.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "lab"))
from demo import http, metric  # noqa: E402  pylint: disable=wrong-import-position,unused-import
from lab_names import DECODE, DECODE2, MASTER  # noqa: E402  pylint: disable=wrong-import-position

PROXY_PORT = 9000
MASTER_ADMIN_PORT = 9004
WORDS = ("a lantern swung above the harbour while nine patient sailors counted crates of salt and "
         "copper wire before the evening tide").split()


def node_ip(name):
    out = subprocess.run(["podman", "inspect", "--format",
                          "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name],
                         capture_output=True, text=True, check=True, timeout=30)
    return out.stdout.strip()


def on_node(name, command, timeout=60, check=True):
    """A shell command on a lab node (podman exec); its stdout."""
    out = subprocess.run(["podman", "exec", name, "sh", "-c", command],
                         capture_output=True, text=True, check=False, timeout=timeout)
    if check and out.returncode:
        raise AssertionError(f"{name}: `{command}` exited {out.returncode}: {out.stderr.strip()}")
    return out.stdout.strip()


def proxy_url():
    return f"http://{node_ip(MASTER)}:{PROXY_PORT}"


def api_key():
    """The key the roles generated on the control node (test_pd_e2e.py proves that the proxy has it)."""
    path = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory" / "credentials" / "pd_api_key.txt"
    return path.read_text().split()[0]


def proxy_health(proxy):
    status, text = http("GET", proxy + "/health", timeout=10)
    return status, json.loads(text)


def proxy_config():
    return json.loads(on_node(MASTER, "cat /etc/pd-proxy/config.json"))


def backend_urls(proxy, role):
    return [b["url"] for b in proxy_health(proxy)[1][role]["backends"]]


def unit_pid(node, unit):
    return int(on_node(node, f"systemctl show --property MainPID --value {unit}") or 0)


def unit_of(node, pattern):
    """The one systemd service on a node whose name matches a glob (vllm-pd-prefill, vllm-pd-decode)."""
    out = on_node(node, f"systemctl list-units --all --plain --no-legend --type=service '{pattern}'")
    return out.split()[0]


# The decode engine's container on the container-runtime host DECODE2 (the role names it after the stage);
# DECODE runs the venv runtime, its engine a systemd unit.
CONTAINER_ENGINE = "vllm-pd-decode"


def decode_node(url):
    """The lab node of a decode backend URL."""
    return next(name for name in (DECODE, DECODE2) if f"//{node_ip(name)}:" in url)


def kill_engine(node):
    """SIGKILL the engine's main process: a crash, which systemd (Restart=) or the container's restart policy
    answers. (`podman kill` would count as a stop by the operator: no restart.)"""
    if node == DECODE2:
        on_node(node, f"kill -KILL $(podman inspect --format '{{{{.State.Pid}}}}' {CONTAINER_ENGINE})")
    else:
        on_node(node, f"systemctl kill --signal=KILL {unit_of(node, 'vllm-pd-*')}")


def engine_run(node):
    """Which run of the engine this is: a new value after every start, a restart after a crash included
    (systemd's InvocationID of the unit, the container's StartedAt). Not NRestarts: systemd resets it on a
    manual start only at the next automatic restart."""
    if node == DECODE2:
        return on_node(node, f"podman inspect --format '{{{{.State.StartedAt}}}}' {CONTAINER_ENGINE}")
    return on_node(node, f"systemctl show --property InvocationID --value {unit_of(node, 'vllm-pd-*')}")


def stop_engine(node):
    """Stop the engine without waiting for the end of its stop: in the lab, systemd inside a podman node
    waits its stop timeout for an empty cgroup (no cgroup notification reaches it), a real host does not."""
    if node == DECODE2:
        on_node(node, f"podman stop --time 5 {CONTAINER_ENGINE}", timeout=120)
    else:
        on_node(node, f"systemctl stop --no-block {unit_of(node, 'vllm-pd-*')}")


def start_engine(node):
    """Start the engine (systemd queues the start after a stop still under way)."""
    if node == DECODE2:
        on_node(node, f"podman start {CONTAINER_ENGINE}", timeout=120)
    else:
        on_node(node, f"systemctl start --no-block {unit_of(node, 'vllm-pd-*')}")


def rss_kib(node, unit):
    pid = unit_pid(node, unit)
    assert pid, f"{node}: {unit} has no main process"
    return int(on_node(node, f"awk '/^VmRSS:/ {{print $2}}' /proc/{pid}/status"))


def wait_for(predicate, timeout, what, step=1.0):
    """Seconds until predicate() was true; fails after timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if predicate():
                return time.monotonic() - started
        except (OSError, http_client.HTTPException, ValueError, AssertionError):
            pass  # a service on its way back refuses, resets or answers 503: not yet
        time.sleep(step)
    raise AssertionError(f"{what}: not within {timeout}s")


def block_size(engine_url):
    text = http("GET", engine_url + "/metrics", timeout=10)[1]
    for line in text.splitlines():
        if line.startswith("vllm:cache_config_info{"):
            return int(line.split('block_size="')[1].split('"')[0])
    raise AssertionError(f"{engine_url}/metrics has no vllm:cache_config_info block_size")


def fresh_prompt(engine_url, tokens):
    """A prompt no engine has seen (a fresh prefix), at least `tokens` long in the model's tokenizer."""
    words = [uuid.uuid4().hex[:8]]
    while True:
        words += WORDS
        status, text = http("POST", engine_url + "/tokenize", {"model": "tiny", "prompt": " ".join(words)},
                            timeout=30)
        assert status == 200, text
        count = json.loads(text)["count"]
        if count >= tokens:
            return " ".join(words), count


def counter(engine_urls, name):
    """The sum of one Prometheus counter over engines (an engine that does not answer counts 0)."""
    total = 0.0
    for url in engine_urls:
        status, text = http("GET", url + "/metrics", timeout=10)
        total += metric(text, name) if status == 200 else 0.0
    return total


def external_hits(engine_urls):
    return counter(engine_urls, "vllm:external_prefix_cache_hits_total")


def completion_body(prompt, max_tokens=4, **extra):
    return dict({"model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                 "ignore_eos": True}, **extra)


def kv_loaded_through_proxy(proxy, key, prefill_url, decode_urls, block, timeout=60):
    """(HTTP status, prompt tokens, tokens the decode engines loaded from Mooncake) for one fresh prompt."""
    prompt, tokens = fresh_prompt(prefill_url, 2 * block + 1)
    before = external_hits(decode_urls)
    status, _text = http("POST", proxy + "/v1/completions", completion_body(prompt), timeout=timeout, key=key)
    return status, tokens, external_hits(decode_urls) - before


class Stream:
    """One streamed request, read line by line with a socket timeout: what arrived, how it ended, when."""

    def __init__(self, url, path, body, key, read_timeout):
        parts = urllib.parse.urlsplit(url)
        self.conn = http_client.HTTPConnection(parts.hostname, parts.port, timeout=read_timeout)
        self.started = time.monotonic()
        self.conn.request("POST", path, json.dumps(dict(body, stream=True)),
                          {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.events = []

    def next_event(self):
        """The next `data:` payload (None at the end of the body)."""
        while True:
            line = self.resp.readline()
            if not line:
                return None
            line = line.decode().strip()
            if line.startswith("data: "):
                self.events.append(line[6:])
                return line[6:]

    def read_to_end(self):
        while self.next_event() is not None:
            pass
        self.conn.close()
        return time.monotonic() - self.started

    def errors(self):
        return [json.loads(e)["error"] for e in self.events if e != "[DONE]" and "error" in json.loads(e)]


# The four kinds of request a client sends through the proxy; chat carries its own template (the lab's
# tiny model has none).
CHAT_TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
KINDS = ("completions", "completions-stream", "chat", "chat-stream")


def request_of(kind, prompt, max_tokens):
    """(path, body) of one request of a kind."""
    body = {"model": "tiny", "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
            "stream": kind.endswith("-stream")}
    if kind.startswith("chat"):
        return "/v1/chat/completions", dict(body, messages=[{"role": "user", "content": prompt}],
                                            chat_template=CHAT_TEMPLATE)
    return "/v1/completions", dict(body, prompt=prompt)


class Outcome:  # pylint: disable=too-few-public-methods
    """One request as its client saw it: kind, start, seconds, HTTP status, error text (None when it succeeded)."""

    def __init__(self, kind, started, seconds, status, error):
        self.kind, self.started, self.seconds, self.status, self.error = kind, started, seconds, status, error

    def __repr__(self):
        return f"{self.kind} at +{self.started:.1f}s: {self.status} after {self.seconds:.1f}s: {self.error}"


def send(proxy, key, kind, prompt, max_tokens, timeout):
    """One request of a kind through the proxy, never longer than `timeout` (a socket timeout per read,
    and the whole call checked by the caller); an Outcome without its start."""
    path, body = request_of(kind, prompt, max_tokens)
    started = time.monotonic()
    parts = urllib.parse.urlsplit(proxy)
    conn = http_client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("POST", path, json.dumps(body),
                     {"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
        resp = conn.getresponse()
        data = resp.read().decode()
        error = None
        if resp.status != 200:
            error = json.loads(data)["error"]["message"]  # a clear error is a JSON body with a message
        elif body["stream"]:
            events = [line[6:] for line in data.splitlines() if line.startswith("data: ")]
            errors = [json.loads(e)["error"]["message"] for e in events if e != "[DONE]" and '"error"' in e]
            if errors or events[-1:] != ["[DONE]"]:
                error = errors[0] if errors else f"stream ended without [DONE] after {len(events)} events"
        elif not json.loads(data)["choices"]:
            error = "answer without choices"
        return Outcome(kind, 0.0, time.monotonic() - started, resp.status, error)
    except (OSError, http_client.HTTPException, ValueError, KeyError) as exc:
        return Outcome(kind, 0.0, time.monotonic() - started, None, f"{exc.__class__.__name__}: {exc}")
    finally:
        conn.close()


class Traffic:
    """`concurrency` clients sending the four kinds of request in turn through the proxy until stopped."""

    def __init__(self, proxy, key, prompts, concurrency, max_tokens=8, timeout=120):
        self.proxy, self.key, self.prompts = proxy, key, prompts
        self.max_tokens, self.timeout = max_tokens, timeout
        self.outcomes = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(concurrency)]
        self.began = time.monotonic()

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc):
        self.stop()

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 10)
        assert not any(t.is_alive() for t in self._threads), f"a client is still waiting after {self.timeout}s"
        return self.outcomes

    def _client(self, number):
        turn = number
        while not self._stop.is_set():
            kind = KINDS[turn % len(KINDS)]
            started = time.monotonic() - self.began
            outcome = send(self.proxy, self.key, kind, self.prompts[turn % len(self.prompts)], self.max_tokens,
                           self.timeout)
            outcome.started = started
            with self._lock:
                self.outcomes.append(outcome)
            turn += 1
