"""The pd-proxy command: configuration from file, command line and environment; the service process."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from proxy_lab import PACKAGE_DIR

from erdma_pd_proxy.config import load_config  # pylint: disable=wrong-import-order


def pd_proxy_command(*args):
    return [sys.executable, "-m", "erdma_pd_proxy", *args]


def package_env(**extra):
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_DIR), PYTHONDONTWRITEBYTECODE="1", **extra)
    for name in ("PD_PROXY_API_KEY", "PD_PROXY_ENGINE_API_KEY"):
        if name not in extra:
            env.pop(name, None)
    return env


def test_config_file_then_command_line_then_environment(tmp_path):
    path = tmp_path / "proxy.json"
    path.write_text(json.dumps({"_managed": "a comment", "prefill": ["http://10.0.0.1:8100"],
                                "decode": ["http://10.0.0.2:8200"], "port": 9100, "policy": "round_robin",
                                "require_api_key": True}))
    config = load_config(["--config", str(path), "--port", "9200", "--decode", "http://d:1"],
                         environ={"PD_PROXY_API_KEY": "k1"})
    assert (config["host"], config["port"], config["policy"]) == ("127.0.0.1", 9200, "round_robin")
    assert config["prefill"] == ["http://10.0.0.1:8100"] and config["decode"] == ["http://d:1"]
    assert config["api_key"] == config["engine_api_key"] == "k1"  # one key for clients and engines by default
    config = load_config(["--config", str(path)], environ={"PD_PROXY_API_KEY": "k1", "PD_PROXY_ENGINE_API_KEY": "k2"})
    assert (config["api_key"], config["engine_api_key"]) == ("k1", "k2")


@pytest.mark.parametrize("content, environ, message", [
    ({"prefill": ["http://p:1"], "decode": ["http://d:1"], "bogus": 1}, {}, "unknown option(s)"),
    ({"prefill": ["http://p:1"], "decode": ["http://d:1"], "api_key": "x"}, {}, "unknown option(s)"),
    ({"prefill": ["http://p:1"], "decode": []}, {}, "'decode' needs at least one http(s):// URL"),
    ({"prefill": ["p:1"], "decode": ["http://d:1"]}, {}, "'prefill' needs at least one"),
    ({"prefill": ["http://p:1"], "decode": ["http://d:1"], "prefill_timeout": 0}, {}, "'prefill_timeout' must be"),
    ({"prefill": ["http://p:1"], "decode": ["http://d:1"], "max_concurrent_requests": 1.5}, {},
     "'max_concurrent_requests' must be a whole number"),
    ({"prefill": ["http://p:1"], "decode": ["http://d:1"], "require_api_key": True}, {},
     "'require_api_key' is set but PD_PROXY_API_KEY is empty"),
    ({"prefill": ["http://p:1"], "decode": ["http://d:1"]}, {"PD_PROXY_API_KEY": "two words"},
     "PD_PROXY_API_KEY must be printable ASCII without spaces (the value is not shown)"),
])
def test_invalid_config_stops_with_a_message(tmp_path, content, environ, message):
    path = tmp_path / "proxy.json"
    path.write_text(json.dumps(content))
    with pytest.raises(SystemExit) as stop:
        load_config(["--config", str(path)], environ=environ)
    assert message in str(stop.value.code)
    assert "two words" not in str(stop.value.code)


def test_check_config_validates_and_exits(tmp_path):
    """Also without the secrets, which only the service's environment has (Ansible validates without it)."""
    path = tmp_path / "proxy.json"
    path.write_text(json.dumps({"prefill": ["http://p:1"], "decode": ["http://d:1", "http://d:2"],
                                "require_api_key": True}))
    done = subprocess.run(pd_proxy_command("--config", str(path), "--check-config"), env=package_env(),
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 and "1 prefill, 2 decode backend(s)" in done.stdout, done.stderr
    path.write_text("{")
    done = subprocess.run(pd_proxy_command("--config", str(path), "--check-config"), env=package_env(),
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1 and f"cannot read config {path}" in done.stderr


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_status(url, headers=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=1) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_service_process_serves_enforces_its_key_and_stops_cleanly_on_sigterm(tmp_path):
    """The proxy as systemd runs it: its own process, a config file, the key in the environment, SIGTERM."""
    port = free_port()
    config = tmp_path / "proxy.json"
    config.write_text(json.dumps({"prefill": ["http://127.0.0.1:9"], "decode": ["http://127.0.0.1:9"],
                                  "port": port, "health_timeout": 0.2, "require_api_key": True,
                                  "client_timeout": 1}))
    proc = subprocess.Popen(pd_proxy_command("--config", str(config)), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=package_env(PD_PROXY_API_KEY="proc-key-1"))
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                status, text = http_status(f"http://127.0.0.1:{port}/metrics")
                assert status == 200 and b"pd_proxy_backend_healthy" in text
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()
                time.sleep(0.1)
        assert http_status(f"http://127.0.0.1:{port}/v1/models")[0] == 401
        # Authenticated, but every backend is down: the request got past the key check.
        assert http_status(f"http://127.0.0.1:{port}/v1/models", {"Authorization": "Bearer proc-key-1"})[0] == 503
        # A client whose headers never end is dropped after client_timeout.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            slow.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            assert slow.recv(100) == b"" and time.monotonic() - started < 5
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        log = proc.stdout.read().decode()
        assert f"PD proxy on http://127.0.0.1:{port}" in log and "API key required" in log
        assert "out of service" in log and "proc-key-1" not in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_service_refuses_to_start_when_its_key_is_required_but_missing(tmp_path):
    config = tmp_path / "proxy.json"
    config.write_text(json.dumps({"prefill": ["http://p:1"], "decode": ["http://d:1"], "require_api_key": True}))
    done = subprocess.run(pd_proxy_command("--config", str(config)), env=package_env(), capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 1 and "PD_PROXY_API_KEY is empty or missing" in done.stderr
