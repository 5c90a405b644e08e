"""The PD proxy package against engine stand-ins over real HTTP on loopback (pytest-aiohttp).

See engine_standin.py for why the engines are stand-ins; molecule/pd_e2e runs the same package in front
of real vLLM engines.
"""
import asyncio
import json
import logging
import re

import pytest
from aiohttp import ClientSession, ClientTimeout

from proxy_lab import wait_until

pytestmark = pytest.mark.asyncio

PROMPT = {"model": "tiny", "prompt": "The quick brown fox", "max_tokens": 5, "temperature": 0.3, "seed": 7,
          "logprobs": 2}
ENGINE_ID = re.compile(r"^pd-[0-9a-f]{32}$")


def events(text):
    return [block for block in text.split("\n\n") if block]


# ---------------------------------------------------------------- the PD flow
async def test_completion_is_prefilled_with_one_token_then_decoded_with_the_original_request(make_lab):
    t = await make_lab()
    status, answer = await t.post("/v1/completions", PROMPT)
    assert status == 200
    assert answer["choices"][0]["text"] == "d0-t0 d0-t1 d0-t2 d0-t3 d0-t4"
    [(p_path, p_body, p_headers)] = t.prefill[0].received
    [(d_path, d_body, d_headers)] = t.decode[0].received
    assert p_path == d_path == "/v1/completions"
    assert p_body == dict(PROMPT, max_tokens=1, stream=False)
    assert d_body == PROMPT  # store connectors: nothing added to the client's request
    assert p_headers["X-Request-Id"] == d_headers["X-Request-Id"]


async def test_streamed_chat_prefill_drops_stream_options_and_caps_both_token_limits(make_lab):
    request = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
               "max_completion_tokens": 4, "min_tokens": 2, "stream": True,
               "stream_options": {"include_usage": True}}
    t = await make_lab()
    async with t.client.post("/v1/chat/completions", json=request) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        sent = events(await resp.text())
    assert sent[-1] == "data: [DONE]"
    assert [json.loads(e[6:])["choices"][0]["text"] for e in sent[:-1]] == ["d0-t0 ", "d0-t1 ", "d0-t2 ", "d0-t3 "]
    prefill_body = t.prefill[0].received[0][1]
    assert prefill_body["max_tokens"] == prefill_body["max_completion_tokens"] == 1
    assert prefill_body["stream"] is False
    assert "stream_options" not in prefill_body and "min_tokens" not in prefill_body
    assert t.decode[0].received[0][1] == request


async def test_kv_transfer_params_from_prefill_are_handed_to_decode(make_lab):
    params = {"do_remote_prefill": True, "remote_engine_id": "p0", "remote_block_ids": [3, 4]}
    t = await make_lab(kv_transfer_params=params, prefill_kv_transfer_params={"do_remote_decode": True})
    status, _answer = await t.post("/v1/completions", PROMPT)
    assert status == 200
    assert t.prefill[0].received[0][1]["kv_transfer_params"] == {"do_remote_decode": True}
    assert t.decode[0].received[0][1] == dict(PROMPT, kv_transfer_params=params)


@pytest.mark.parametrize("engine_params", [None, {"do_remote_prefill": True, "remote_host": "10.0.0.1"}])
async def test_a_clients_kv_transfer_params_reach_neither_engine(make_lab, engine_params):
    """With P2P connectors they name the remote host and blocks that decode reads: only the proxy sets them."""
    forged = {"do_remote_prefill": True, "remote_host": "203.0.113.9", "remote_port": 22, "remote_block_ids": [0]}
    t = await make_lab(kv_transfer_params=engine_params)
    status, _answer = await t.post("/v1/completions", dict(PROMPT, kv_transfer_params=forged))
    assert status == 200
    assert "kv_transfer_params" not in t.prefill[0].received[0][1]
    assert t.decode[0].received[0][1].get("kv_transfer_params") == engine_params
    assert t.decode[0].received[0][1] == (dict(PROMPT, kv_transfer_params=engine_params) if engine_params else PROMPT)


# ---------------------------------------------------------------- xPyD routing
async def test_round_robin_spreads_requests_evenly(make_lab):
    t = await make_lab(n_prefill=2, n_decode=2, policy="round_robin")
    for _attempt in range(6):
        assert (await t.post("/v1/completions", PROMPT))[0] == 200
    assert [len(e.received) for e in t.prefill + t.decode] == [3, 3, 3, 3]
    # The split is visible in the metrics, per backend (what an operator reads to see the balance).
    _status, metrics = await t.get_text("/metrics")
    for role, engines in (("prefill", t.prefill), ("decode", t.decode)):
        for engine in engines:
            assert f'pd_proxy_backend_requests_total{{backend="{engine.url}",role="{role}"}} 3.0' in metrics


async def test_backend_answers_are_counted_per_backend_but_not_a_refused_connection(make_lab):
    t = await make_lab(n_decode=2, policy="round_robin", health_interval=60)
    await t.decode[1].server.close()
    for _attempt in range(3):
        assert (await t.post("/v1/completions", PROMPT))[0] == 200
    _status, metrics = await t.get_text("/metrics")
    assert f'pd_proxy_backend_requests_total{{backend="{t.decode[0].url}",role="decode"}} 3.0' in metrics
    assert f'pd_proxy_backend_requests_total{{backend="{t.decode[1].url}",role="decode"}}' not in metrics


async def test_least_inflight_avoids_the_busy_decode_backend(make_lab):
    t = await make_lab(n_decode=2, policy="least_inflight")
    slow = asyncio.create_task(t.post("/v1/completions", dict(PROMPT, standin_delay=1.5)))
    await wait_until(lambda: any(b.inflight for b in t.proxy.decode.backends))
    busy = next(e for e, b in zip(t.decode, t.proxy.decode.backends) if b.inflight)
    for _attempt in range(5):
        assert (await t.post("/v1/completions", PROMPT))[0] == 200
    assert len(busy.received) == 1, "least_inflight sent work to the busy backend"
    assert (await slow)[0] == 200


async def test_failed_prefill_is_retried_on_another_prefill_backend(make_lab):
    t = await make_lab(n_prefill=2, policy="round_robin", health_interval=60)
    t.prefill[0].fail_status = 500
    for _attempt in range(4):
        status, answer = await t.post("/v1/completions", PROMPT)
        assert status == 200, answer
    assert len(t.prefill[1].received) == 4
    assert len(t.prefill[0].received) >= 1
    _status, metrics = await t.get_text("/metrics")
    assert f"pd_proxy_prefill_retries_total {float(len(t.prefill[0].received))}" in metrics
    assert len(t.decode[0].received) == 4  # the failed prefill never reached decode twice


async def test_unreachable_prefill_backend_is_taken_out_at_once(make_lab):
    t = await make_lab(n_prefill=2, policy="round_robin", health_interval=60)
    await t.prefill[0].server.close()
    for _attempt in range(3):
        assert (await t.post("/v1/completions", PROMPT))[0] == 200
    assert t.proxy.prefill.backends[0].healthy is False
    assert len(t.prefill[1].received) == 3


async def test_no_prefill_backend_answers_503_with_the_reasons(make_lab):
    t = await make_lab(n_prefill=2, health_interval=60)
    for engine in t.prefill:
        engine.fail_status = 500
    status, answer = await t.post("/v1/completions", PROMPT)
    assert status == 503
    message = answer["error"]["message"]
    assert message.startswith("no prefill backend could take the request")
    assert t.prefill[0].url in message and t.prefill[1].url in message and "HTTP 500" in message
    assert not t.decode[0].received


async def test_unhealthy_backend_is_evicted_and_put_back(make_lab):
    t = await make_lab(n_decode=2, policy="round_robin")
    t.decode[1].healthy = False
    await wait_until(lambda: not t.proxy.decode.backends[1].healthy)
    _status, metrics = await t.get_text("/metrics")
    assert f'pd_proxy_backend_healthy{{backend="{t.decode[1].url}",role="decode"}} 0.0' in metrics
    for _attempt in range(4):
        assert (await t.post("/v1/completions", PROMPT))[0] == 200
    assert (len(t.decode[0].received), len(t.decode[1].received)) == (4, 0)
    t.decode[1].healthy = True
    await wait_until(lambda: t.proxy.decode.backends[1].healthy)
    for _attempt in range(4):
        assert (await t.post("/v1/completions", PROMPT))[0] == 200
    assert len(t.decode[1].received) == 2


async def test_decode_down_answers_503_and_recovers_when_it_returns(make_lab):
    t = await make_lab()
    port = t.decode[0].server.port
    await t.decode[0].server.close()
    status, answer = await t.post("/v1/completions", PROMPT)
    assert status == 503
    assert "no decode backend is available" in answer["error"]["message"]
    status, health = await t.get_text("/health")
    assert status == 503 and json.loads(health)["decode"]["healthy"] == 0
    await t.start_engine(t.decode[0], port=port)
    await wait_until(lambda: t.proxy.decode.backends[0].healthy)
    status, answer = await t.post("/v1/completions", PROMPT)
    assert status == 200 and answer["choices"][0]["text"].startswith("d0-t0")


async def test_no_prefill_runs_while_no_decode_backend_is_healthy(make_lab):
    t = await make_lab(n_decode=2)
    for engine in t.decode:
        engine.healthy = False
    await wait_until(lambda: not t.proxy.decode.any_healthy())
    status, answer = await t.post("/v1/completions", PROMPT)
    assert status == 503 and "no decode backend is available" in answer["error"]["message"]
    assert not t.prefill[0].received, "a prefill ran for a request that no decode could finish"


# ---------------------------------------------------------------- cancellation and timeouts
async def test_client_disconnect_mid_stream_cancels_the_decode_request(make_lab):
    t = await make_lab()
    t.decode[0].chunk_delay = 0.1
    body = dict(PROMPT, max_tokens=200, stream=True)
    async with ClientSession() as client:
        async with client.post(t.url + "/v1/completions", json=body) as resp:
            assert resp.status == 200
            await resp.content.readline()  # the first token arrived; now walk away
    await wait_until(lambda: t.decode[0].cancelled == 1)
    assert t.decode[0].finished == 0
    await wait_until(lambda: t.proxy.decode.backends[0].inflight == 0)


async def test_client_disconnect_during_prefill_cancels_it_skips_decode_and_counts_no_status(make_lab):
    t = await make_lab()
    t.prefill[0].delay = 5
    async with ClientSession() as client:
        with pytest.raises(asyncio.TimeoutError):
            async with client.post(t.url + "/v1/completions", json=PROMPT, timeout=ClientTimeout(total=0.3)):
                pass
    await wait_until(lambda: t.prefill[0].cancelled == 1)
    await wait_until(lambda: t.proxy.prefill.backends[0].inflight == 0)
    assert not t.decode[0].received
    _status, metrics = await t.get_text("/metrics")
    # The client never received a status line: no status is counted for it, only the disconnect.
    assert "pd_proxy_requests_total{" not in metrics
    assert 'pd_proxy_errors_total{reason="disconnected",stage="client"} 1.0' in metrics


async def test_slow_prefill_times_out_with_504_and_is_not_repeated(make_lab):
    t = await make_lab(n_prefill=2, prefill_timeout=0.3)
    for engine in t.prefill:
        engine.delay = 3
    status, answer = await t.post("/v1/completions", PROMPT)
    assert status == 504 and "took longer than 0.3s" in answer["error"]["message"]
    assert sum(len(e.received) for e in t.prefill) == 1
    assert all(b.healthy for b in t.proxy.prefill.backends)  # slow is not down


async def test_stalled_stream_ends_with_an_error_event_inside_the_200(make_lab):
    t = await make_lab(decode_idle_timeout=0.3)
    t.decode[0].stall_after = 2
    async with t.client.post("/v1/completions", json=dict(PROMPT, stream=True, max_tokens=6)) as resp:
        assert resp.status == 200
        raw = await resp.read()  # the body ends properly: no exception for the client
    text = raw.decode()
    assert "HTTP/1.1" not in text, "an HTTP response was written inside the stream's body"
    sent = events(text)
    assert [json.loads(e[6:])["choices"][0]["text"] for e in sent[:2]] == ["d0-t0 ", "d0-t1 "]
    error = json.loads(sent[2][6:])["error"]
    assert error["code"] == 504 and "decode backend sent nothing for 0.3s" in error["message"]
    assert len(sent) == 3
    await wait_until(lambda: t.decode[0].cancelled == 1)  # the engine's request was aborted
    _status, metrics = await t.get_text("/metrics")
    assert 'pd_proxy_requests_total{endpoint="/v1/completions",status="200"} 1.0' in metrics
    assert 'status="504"' not in metrics  # the client saw a 200, with an error event in it
    assert 'pd_proxy_errors_total{reason="idle_timeout",stage="decode"} 1.0' in metrics


async def test_idle_timeout_does_not_bound_the_wait_for_a_non_streamed_answer(make_lab):
    """A non-streamed decode sends its headers when it is done: only the total timeout bounds that."""
    t = await make_lab(decode_idle_timeout=0.2, decode_timeout=10)
    t.decode[0].delay = 0.8
    status, answer = await t.post("/v1/completions", PROMPT)
    assert status == 200, answer
    assert answer["choices"][0]["text"].startswith("d0-t0")


async def test_total_decode_timeout_still_applies(make_lab):
    t = await make_lab(decode_idle_timeout=0.2, decode_timeout=0.5)
    t.decode[0].delay = 3
    status, answer = await t.post("/v1/completions", PROMPT)
    assert status == 504 and "did not answer within 0.5s" in answer["error"]["message"]


# ---------------------------------------------------------------- request ids
async def test_engines_get_the_proxys_own_request_id_and_the_client_gets_its_own_back(make_lab, caplog):
    caplog.set_level(logging.INFO, logger="pd_proxy")
    t = await make_lab()
    client_id = "same-id-from-two-clients"
    answers = []
    for _client in range(2):
        async with t.client.post("/v1/completions", json=PROMPT, headers={"X-Request-Id": client_id}) as resp:
            assert resp.status == 200
            answers.append(resp.headers)
    engine_ids = [headers["X-Request-Id"] for _path, _body, headers in t.decode[0].received]
    assert all(ENGINE_ID.match(i) for i in engine_ids) and len(set(engine_ids)) == 2
    assert [h["X-Request-Id"] for _p, _b, h in t.prefill[0].received] == engine_ids  # one id per exchange on P and D
    assert [a["X-Request-Id"] for a in answers] == [client_id, client_id]
    assert [a["X-PD-Request-Id"] for a in answers] == engine_ids
    logged = [r.getMessage() for r in caplog.records if engine_ids[0] in r.getMessage()]
    assert logged and client_id in logged[0] and "-> 200" in logged[0]


async def test_a_clients_request_id_is_sanitized_and_bounded(make_lab):
    t = await make_lab()
    hostile = "abc <script>\"';%0A" + "x" * 500
    async with t.client.post("/v1/completions", json=PROMPT, headers={"X-Request-Id": hostile}) as resp:
        echoed = resp.headers["X-Request-Id"]
    assert echoed == ("abcscript0A" + "x" * 500)[:128]
    async with t.client.post("/v1/completions", json=PROMPT) as resp:
        assert ENGINE_ID.match(resp.headers["X-Request-Id"])  # none given: the proxy's own


# ---------------------------------------------------------------- bad input, limits
@pytest.mark.parametrize("path, raw, status, message", [
    ("/v1/completions", b"{not json", 400, "request body is not valid JSON"),
    ("/v1/completions", b"[1, 2]", 400, "request body must be a JSON object"),
    ("/v1/completions", b'{"model": "tiny"}', 400, "missing required field 'prompt'"),
    ("/v1/chat/completions", b'{"model": "tiny", "prompt": "x"}', 400, "missing required field 'messages'"),
    ("/v1/completions", b'{"prompt": "x"}', 400, "missing required field 'model'"),
    ("/v1/completions", b'{"model": "t", "prompt": "x", "max_tokens": "9"}', 400, "'max_tokens' must be"),
    ("/v1/completions", b'{"model": "t", "prompt": "' + b"x" * 5000 + b'"}', 413, "larger than the proxy's limit"),
    ("/v1/completions", b"[" * 4000, 400, "nests deeper than 64 levels"),
    ("/v1/completions", b'{"model": "t", "prompt": "x", "a": ' + b"[" * 100 + b"]" * 100 + b"}", 400,
     "nests deeper than 64 levels"),
])
async def test_bad_input_gets_a_clear_json_4xx_and_the_proxy_stays_up(make_lab, path, raw, status, message):
    t = await make_lab(max_body_bytes=4096)
    async with t.client.post(path, data=raw, headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == status
        assert resp.content_type == "application/json"
        answer = await resp.json()
    assert message in answer["error"]["message"]
    assert answer["error"]["code"] == status
    assert not t.prefill[0].received and not t.decode[0].received
    assert (await t.post("/v1/completions", PROMPT))[0] == 200


async def test_engine_refusal_at_prefill_is_the_clients_answer(make_lab):
    t = await make_lab()
    t.prefill[0].fail_status = 400
    status, answer = await t.post("/v1/completions", PROMPT)
    assert status == 400 and "p0 told to fail" in answer["error"]["message"]
    assert not t.decode[0].received
    assert t.proxy.prefill.backends[0].healthy


async def test_compressed_engine_answer_reaches_the_client_as_plain_json(make_lab):
    t = await make_lab()
    t.decode[0].gzip = True
    async with t.client.post("/v1/completions", json=PROMPT, auto_decompress=False) as resp:
        assert resp.status == 200 and "Content-Encoding" not in resp.headers
        answer = json.loads(await resp.read())  # raw bytes: not gzip labelled as JSON
    assert answer["choices"][0]["text"].startswith("d0-t0")
    assert t.decode[0].received[0][2]["Accept-Encoding"] == "identity"
    assert t.prefill[0].received[0][2]["Accept-Encoding"] == "identity"


async def test_requests_beyond_the_concurrency_limit_get_503_at_once(make_lab):
    t = await make_lab(max_concurrent_requests=2)
    t.decode[0].delay = 0.5
    busy = [asyncio.create_task(t.post("/v1/completions", PROMPT)) for _slot in range(2)]
    await wait_until(lambda: t.proxy.active == 2)
    async with t.client.post("/v1/completions", json=PROMPT) as resp:
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        assert "limit of 2 concurrent requests" in (await resp.json())["error"]["message"]
    assert (await t.get_text("/health"))[0] == 200  # health and metrics are not limited
    assert [(await task)[0] for task in busy] == [200, 200]
    assert (await t.post("/v1/completions", PROMPT))[0] == 200
    assert len(t.prefill[0].received) == 3


async def test_a_client_that_sends_its_body_too_slowly_gets_408(make_lab):
    t = await make_lab(client_timeout=0.3)
    host, port = t.url.split("//")[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{\"model\": ")
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 408"), status_line
    assert not t.prefill[0].received


# ---------------------------------------------------------------- API key
async def test_api_key_is_required_from_clients_and_sent_to_the_engines(make_lab):
    t = await make_lab(api_key="client-key-123", engine_api_key="engine-key-456")
    for engine in t.prefill + t.decode:
        engine.api_key = "engine-key-456"  # the engines refuse anything else, as vLLM with --api-key does
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "client-key-123"},
                    {"Authorization": "Bearer engine-key-456"}):
        async with t.client.post("/v1/completions", json=PROMPT, headers=headers) as resp:
            assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
            assert (await resp.json())["error"]["type"] == "authentication_error"
        assert (await t.get_text("/v1/models", headers=headers))[0] == 401
    assert not t.prefill[0].received
    good = {"Authorization": "Bearer client-key-123"}
    status, answer = await t.post("/v1/completions", PROMPT, headers=good)
    assert status == 200, answer
    status, models = await t.get_text("/v1/models", headers=good)
    assert status == 200 and json.loads(models)["data"][0]["id"] == "tiny"
    for engine in t.prefill + t.decode:
        assert engine.received[0][2]["Authorization"] == "Bearer engine-key-456"
        await wait_until(lambda engine=engine: engine.health_headers)
        assert engine.health_headers[-1]["Authorization"] == "Bearer engine-key-456"
    # Health and metrics stay open, as vLLM's: load balancers and Prometheus scrape them.
    assert (await t.get_text("/health"))[0] == 200
    status, metrics = await t.get_text("/metrics")
    assert status == 200 and 'pd_proxy_requests_total{endpoint="/v1/completions",status="401"} 4.0' in metrics
    assert "client-key-123" not in metrics and "engine-key-456" not in metrics


async def test_without_a_key_of_its_own_the_proxy_passes_the_clients_authorization_on(make_lab):
    t = await make_lab()
    status, _answer = await t.post("/v1/completions", PROMPT, headers={"Authorization": "Bearer theirs"})
    assert status == 200
    assert t.decode[0].received[0][2]["Authorization"] == "Bearer theirs"


# ---------------------------------------------------------------- models, health, metrics
async def test_models_and_health(make_lab):
    t = await make_lab(n_prefill=2)
    status, models = await t.get_text("/v1/models")
    assert status == 200 and json.loads(models)["data"][0]["id"] == "tiny"
    status, health = await t.get_text("/health")
    assert status == 200
    health = json.loads(health)
    assert health["status"] == "ok"
    assert (health["prefill"]["healthy"], health["prefill"]["total"]) == (2, 2)
    assert health["decode"] == {"healthy": 1, "total": 1, "backends": [
        {"url": t.decode[0].url, "healthy": True, "inflight": 0}]}


SAMPLE = re.compile(r'^[a-z_]+(\{([a-z_]+="[^"]*",?)*\})? [0-9.e+-]+$')


async def test_metrics_count_requests_errors_latencies_and_inflight(make_lab):
    t = await make_lab()
    assert (await t.post("/v1/completions", PROMPT))[0] == 200
    assert (await t.post("/v1/completions", dict(PROMPT, stream=True, max_tokens=2)))[0] == 200
    assert (await t.post("/v1/completions", {"model": "tiny"}))[0] == 400
    async with t.client.get("/metrics") as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        text = await resp.text()
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert all(SAMPLE.match(line) for line in samples), [s for s in samples if not SAMPLE.match(s)]
    assert 'pd_proxy_requests_total{endpoint="/v1/completions",status="200"} 2.0' in samples
    assert 'pd_proxy_requests_total{endpoint="/v1/completions",status="400"} 1.0' in samples
    assert 'pd_proxy_errors_total{reason="400",stage="input"} 1.0' in samples
    assert "pd_proxy_requests_in_progress 0.0" in samples
    for name in ("prefill", "decode", "ttft"):
        assert f"pd_proxy_{name}_seconds_count 2.0" in samples
        assert f'pd_proxy_{name}_seconds_bucket{{le="+Inf"}} 2.0' in samples
    for engine, role in ((t.prefill[0], "prefill"), (t.decode[0], "decode")):
        assert f'pd_proxy_backend_inflight{{backend="{engine.url}",role="{role}"}} 0.0' in samples


@pytest.mark.parametrize("refusing", ["prefill", "decode"])
async def test_an_engine_that_refuses_the_proxys_key_is_a_502_not_the_clients_401(make_lab, refusing):
    t = await make_lab(api_key="client-key", engine_api_key="stale-key")
    for engine in getattr(t, refusing):
        engine.api_key = "rotated-key"
    good = {"Authorization": "Bearer client-key"}
    status, answer = await t.post("/v1/completions", PROMPT, headers=good)
    assert status == 502 and "refused the proxy's engine API key" in answer["error"]["message"]
    assert refusing in answer["error"]["message"]
    if refusing == "decode":
        assert (await t.get_text("/v1/models", headers=good))[0] == 502
        await wait_until(lambda: t.proxy.decode.backends[0].inflight == 0)
