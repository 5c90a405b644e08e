"""The PD proxy against engine stand-ins over real HTTP on loopback (see engine_standin.py for why)."""
import asyncio
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from aiohttp import ClientSession, ClientTimeout

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from engine_standin import EngineStandIn  # noqa: E402  pylint: disable=wrong-import-position
from pd_proxy_harness import PROXY_FILE, lab, pd_proxy, run, wait_until  # noqa: E402  pylint: disable=wrong-import-position

PROMPT = {"model": "tiny", "prompt": "The quick brown fox", "max_tokens": 5, "temperature": 0.3, "seed": 7,
          "logprobs": 2}


# ---------------------------------------------------------------- the PD flow
def test_completion_is_prefilled_with_one_token_then_decoded_with_the_original_request():
    async def scenario():
        async with lab() as t:
            status, answer = await t.post("/v1/completions", PROMPT)
            assert status == 200
            assert answer["choices"][0]["text"] == "d0-t0 d0-t1 d0-t2 d0-t3 d0-t4"
            [(p_path, p_body, p_headers)] = t.prefill[0].received
            [(d_path, d_body, d_headers)] = t.decode[0].received
            assert p_path == d_path == "/v1/completions"
            assert p_body == dict(PROMPT, max_tokens=1, stream=False)
            assert d_body == PROMPT  # store connectors: nothing added to the client's request
            assert p_headers["X-Request-Id"] == d_headers["X-Request-Id"]
    run(scenario())


def test_streamed_chat_prefill_drops_stream_options_and_caps_both_token_limits():
    request = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
               "max_completion_tokens": 4, "min_tokens": 2, "stream": True,
               "stream_options": {"include_usage": True}}

    async def scenario():
        async with lab() as t:
            async with t.session.post(t.url + "/v1/chat/completions", json=request) as resp:
                assert resp.status == 200
                assert resp.content_type == "text/event-stream"
                events = [line for line in (await resp.text()).split("\n\n") if line]
            assert events[-1] == "data: [DONE]"
            assert [json.loads(e[6:])["choices"][0]["text"] for e in events[:-1]] == \
                ["d0-t0 ", "d0-t1 ", "d0-t2 ", "d0-t3 "]
            prefill_body = t.prefill[0].received[0][1]
            assert prefill_body["max_tokens"] == prefill_body["max_completion_tokens"] == 1
            assert prefill_body["stream"] is False
            assert "stream_options" not in prefill_body and "min_tokens" not in prefill_body
            assert t.decode[0].received[0][1] == request
    run(scenario())


def test_kv_transfer_params_from_prefill_are_handed_to_decode():
    params = {"do_remote_prefill": True, "remote_engine_id": "p0", "remote_block_ids": [3, 4]}

    async def scenario():
        async with lab(kv_transfer_params=params,
                       prefill_kv_transfer_params={"do_remote_decode": True}) as t:
            status, _answer = await t.post("/v1/completions", PROMPT)
            assert status == 200
            assert t.prefill[0].received[0][1]["kv_transfer_params"] == {"do_remote_decode": True}
            assert t.decode[0].received[0][1] == dict(PROMPT, kv_transfer_params=params)
    run(scenario())


# ---------------------------------------------------------------- xPyD routing
def test_round_robin_spreads_requests_evenly():
    async def scenario():
        async with lab(n_prefill=2, n_decode=2, policy="round_robin") as t:
            for _attempt in range(6):
                assert (await t.post("/v1/completions", PROMPT))[0] == 200
            assert [len(e.received) for e in t.prefill + t.decode] == [3, 3, 3, 3]
    run(scenario())


def test_least_inflight_avoids_the_busy_decode_backend():
    async def scenario():
        async with lab(n_decode=2, policy="least_inflight") as t:
            slow = asyncio.create_task(t.post("/v1/completions", dict(PROMPT, standin_delay=1.5)))
            await wait_until(lambda: any(b.inflight for b in t.proxy.decode.backends))
            busy = next(e for e, b in zip(t.decode, t.proxy.decode.backends) if b.inflight)
            for _attempt in range(5):
                assert (await t.post("/v1/completions", PROMPT))[0] == 200
            assert len(busy.received) == 1, "least_inflight sent work to the busy backend"
            assert (await slow)[0] == 200
    run(scenario())


def test_failed_prefill_is_retried_on_another_prefill_backend():
    async def scenario():
        async with lab(n_prefill=2, policy="round_robin", health_interval=60) as t:
            t.prefill[0].fail_status = 500
            for _attempt in range(4):
                status, answer = await t.post("/v1/completions", PROMPT)
                assert status == 200, answer
            assert len(t.prefill[1].received) == 4
            assert len(t.prefill[0].received) >= 1
            assert t.proxy.metrics.retries == len(t.prefill[0].received)
            assert len(t.decode[0].received) == 4  # the failed prefill never reached decode twice
    run(scenario())


def test_unreachable_prefill_backend_is_taken_out_at_once():
    async def scenario():
        async with lab(n_prefill=2, policy="round_robin", health_interval=60) as t:
            await t.prefill[0].stop()
            for _attempt in range(3):
                assert (await t.post("/v1/completions", PROMPT))[0] == 200
            assert t.proxy.prefill.backends[0].healthy is False
            assert len(t.prefill[1].received) == 3
    run(scenario())


def test_no_prefill_backend_answers_503_with_the_reasons():
    async def scenario():
        async with lab(n_prefill=2, health_interval=60) as t:
            for engine in t.prefill:
                engine.fail_status = 500
            status, answer = await t.post("/v1/completions", PROMPT)
            assert status == 503
            message = answer["error"]["message"]
            assert message.startswith("no prefill backend could take the request")
            assert t.prefill[0].url in message and t.prefill[1].url in message and "HTTP 500" in message
            assert not t.decode[0].received
    run(scenario())


def test_unhealthy_backend_is_evicted_and_put_back():
    async def scenario():
        async with lab(n_decode=2, policy="round_robin") as t:
            t.decode[1].healthy = False
            await wait_until(lambda: not t.proxy.decode.backends[1].healthy)
            _status, metrics = await t.get_text("/metrics")
            assert f'pd_proxy_backend_healthy{{role="decode",backend="{t.decode[1].url}"}} 0' in metrics
            for _attempt in range(4):
                assert (await t.post("/v1/completions", PROMPT))[0] == 200
            assert (len(t.decode[0].received), len(t.decode[1].received)) == (4, 0)
            t.decode[1].healthy = True
            await wait_until(lambda: t.proxy.decode.backends[1].healthy)
            for _attempt in range(4):
                assert (await t.post("/v1/completions", PROMPT))[0] == 200
            assert len(t.decode[1].received) == 2
    run(scenario())


def test_decode_down_answers_503_and_recovers_when_it_returns():
    async def scenario():
        async with lab() as t:
            port = int(t.decode[0].url.rsplit(":", 1)[1])
            await t.decode[0].stop()
            status, answer = await t.post("/v1/completions", PROMPT)
            assert status == 503
            assert "no decode backend is available" in answer["error"]["message"]
            status, health = await t.get_text("/health")
            assert status == 503 and json.loads(health)["decode"]["healthy"] == 0
            t.decode[0] = await EngineStandIn("d0").start(port=port)
            await wait_until(lambda: t.proxy.decode.backends[0].healthy)
            status, answer = await t.post("/v1/completions", PROMPT)
            assert status == 200 and answer["choices"][0]["text"].startswith("d0-t0")
    run(scenario())


# ---------------------------------------------------------------- cancellation and timeouts
def test_client_disconnect_mid_stream_cancels_the_decode_request():
    async def scenario():
        async with lab() as t:
            t.decode[0].chunk_delay = 0.1
            body = dict(PROMPT, max_tokens=200, stream=True)
            async with ClientSession() as client:
                async with client.post(t.url + "/v1/completions", json=body) as resp:
                    assert resp.status == 200
                    await resp.content.readline()  # the first token arrived; now walk away
            await wait_until(lambda: t.decode[0].cancelled == 1)
            assert t.decode[0].finished == 0
            await wait_until(lambda: t.proxy.decode.backends[0].inflight == 0)
    run(scenario())


def test_client_disconnect_during_prefill_cancels_it_and_skips_decode():
    async def scenario():
        async with lab() as t:
            t.prefill[0].delay = 5
            with pytest.raises(asyncio.TimeoutError):
                await t.post("/v1/completions", PROMPT, timeout=ClientTimeout(total=0.3))
            await wait_until(lambda: t.prefill[0].cancelled == 1)
            await wait_until(lambda: t.proxy.prefill.backends[0].inflight == 0)
            assert not t.decode[0].received
    run(scenario())


def test_slow_prefill_times_out_with_504_and_is_not_repeated():
    async def scenario():
        async with lab(n_prefill=2, prefill_timeout=0.3) as t:
            for engine in t.prefill:
                engine.delay = 3
            status, answer = await t.post("/v1/completions", PROMPT)
            assert status == 504 and "took longer than 0.3s" in answer["error"]["message"]
            assert sum(len(e.received) for e in t.prefill) == 1
            assert all(b.healthy for b in t.proxy.prefill.backends)  # slow is not down
    run(scenario())


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("path, raw, status, message", [
    ("/v1/completions", b"{not json", 400, "request body is not valid JSON"),
    ("/v1/completions", b"[1, 2]", 400, "request body must be a JSON object"),
    ("/v1/completions", b'{"model": "tiny"}', 400, "missing required field 'prompt'"),
    ("/v1/chat/completions", b'{"model": "tiny", "prompt": "x"}', 400, "missing required field 'messages'"),
    ("/v1/completions", b'{"prompt": "x"}', 400, "missing required field 'model'"),
    ("/v1/completions", b'{"model": "t", "prompt": "x", "max_tokens": "9"}', 400, "'max_tokens' must be"),
    ("/v1/completions", b'{"model": "t", "prompt": "' + b"x" * 5000 + b'"}', 413, "larger than the proxy's limit"),
])
def test_bad_input_gets_a_clear_4xx_and_the_proxy_stays_up(path, raw, status, message):
    async def scenario():
        async with lab(max_body_bytes=4096) as t:
            async with t.session.post(t.url + path, data=raw,
                                      headers={"Content-Type": "application/json"}) as resp:
                assert resp.status == status
                answer = await resp.json()
            assert message in answer["error"]["message"]
            assert answer["error"]["code"] == status
            assert not t.prefill[0].received and not t.decode[0].received
            assert (await t.post("/v1/completions", PROMPT))[0] == 200
    run(scenario())


def test_engine_refusal_at_prefill_is_the_clients_answer():
    async def scenario():
        async with lab() as t:
            t.prefill[0].fail_status = 400
            status, answer = await t.post("/v1/completions", PROMPT)
            assert status == 400 and "p0 told to fail" in answer["error"]["message"]
            assert not t.decode[0].received
            assert t.proxy.prefill.backends[0].healthy
    run(scenario())


# ---------------------------------------------------------------- models, health, metrics
def test_models_and_health():
    async def scenario():
        async with lab(n_prefill=2) as t:
            status, models = await t.get_text("/v1/models")
            assert status == 200 and json.loads(models)["data"][0]["id"] == "tiny"
            status, health = await t.get_text("/health")
            assert status == 200
            health = json.loads(health)
            assert health["status"] == "ok"
            assert (health["prefill"]["healthy"], health["prefill"]["total"]) == (2, 2)
            assert health["decode"] == {"healthy": 1, "total": 1, "backends": [
                {"url": t.decode[0].url, "healthy": True, "inflight": 0}]}
    run(scenario())


SAMPLE = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"]*",?)*\})? [0-9.e+-]+$')


def test_metrics_count_requests_errors_latencies_and_inflight():
    async def scenario():
        async with lab() as t:
            assert (await t.post("/v1/completions", PROMPT))[0] == 200
            assert (await t.post("/v1/completions", dict(PROMPT, stream=True, max_tokens=2)))[0] == 200
            assert (await t.post("/v1/completions", {"model": "tiny"}))[0] == 400
            status, text = await t.get_text("/metrics")
            assert status == 200
            samples = [line for line in text.splitlines() if not line.startswith("#")]
            assert all(SAMPLE.match(line) for line in samples), [s for s in samples if not SAMPLE.match(s)]
            assert 'pd_proxy_requests_total{endpoint="/v1/completions",status="200"} 2' in samples
            assert 'pd_proxy_requests_total{endpoint="/v1/completions",status="400"} 1' in samples
            assert 'pd_proxy_errors_total{stage="input",reason="400"} 1' in samples
            for name in ("prefill", "decode", "ttft"):
                assert f"pd_proxy_{name}_seconds_count 2" in samples
                assert f'pd_proxy_{name}_seconds_bucket{{le="+Inf"}} 2' in samples
            for engine, role in ((t.prefill[0], "prefill"), (t.decode[0], "decode")):
                assert f'pd_proxy_backend_inflight{{role="{role}",backend="{engine.url}"}} 0' in samples
    run(scenario())


# ---------------------------------------------------------------- configuration and the real process
def test_config_file_then_command_line(tmp_path):
    path = tmp_path / "proxy.json"
    path.write_text(json.dumps({"_managed": "a comment", "prefill": ["http://10.0.0.1:8100"],
                                "decode": ["http://10.0.0.2:8200"], "port": 9100, "policy": "round_robin"}))
    config = pd_proxy.load_config(["--config", str(path), "--port", "9200", "--decode", "http://d:1"])
    assert (config["host"], config["port"], config["policy"]) == ("127.0.0.1", 9200, "round_robin")
    assert config["prefill"] == ["http://10.0.0.1:8100"] and config["decode"] == ["http://d:1"]


@pytest.mark.parametrize("content, message", [
    ({"prefill": ["http://p:1"], "decode": ["http://d:1"], "bogus": 1}, "unknown option(s)"),
    ({"prefill": ["http://p:1"], "decode": []}, "'decode' needs at least one http(s):// URL"),
    ({"prefill": ["p:1"], "decode": ["http://d:1"]}, "'prefill' needs at least one"),
    ({"prefill": ["http://p:1"], "decode": ["http://d:1"], "prefill_timeout": 0}, "'prefill_timeout' must be"),
])
def test_invalid_config_stops_with_a_message(tmp_path, content, message):
    path = tmp_path / "proxy.json"
    path.write_text(json.dumps(content))
    with pytest.raises(SystemExit) as stop:
        pd_proxy.load_config(["--config", str(path)])
    assert message in str(stop.value.code)


def test_check_config_validates_and_exits(tmp_path):
    path = tmp_path / "proxy.json"
    path.write_text(json.dumps({"prefill": ["http://p:1"], "decode": ["http://d:1", "http://d:2"]}))
    done = subprocess.run([sys.executable, str(PROXY_FILE), "--config", str(path), "--check-config"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 and "1 prefill, 2 decode backend(s)" in done.stdout
    path.write_text("{")
    done = subprocess.run([sys.executable, str(PROXY_FILE), "--config", str(path), "--check-config"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1 and f"cannot read config {path}" in done.stderr


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_service_process_serves_and_stops_cleanly_on_sigterm(tmp_path):
    """The proxy as systemd runs it: its own process, a config file, SIGTERM to stop."""
    port = free_port()
    config = tmp_path / "proxy.json"
    config.write_text(json.dumps({"prefill": ["http://127.0.0.1:9"], "decode": ["http://127.0.0.1:9"],
                                  "port": port, "health_timeout": 0.2}))
    proc = subprocess.Popen([sys.executable, str(PROXY_FILE), "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as resp:
                    assert b"pd_proxy_backend_healthy" in resp.read()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read()
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        log = proc.stdout.read().decode()
        assert f"PD proxy on http://127.0.0.1:{port}" in log and "out of service" in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
