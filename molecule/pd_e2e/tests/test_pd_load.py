"""A bounded soak through the proxy on the real engines (issue 14): streamed and whole answers, completions and
chat, at several concurrency levels; no request fails, no in-flight count leaks, the proxy's and the master's
memory stay flat.

PD_SOAK_SECONDS (default 60, what CI runs) is the soak's whole length, split over the levels; the README's
longer figures come from a run with a larger value.
"""
import os
import time

import pytest

from fault_kit import (Traffic, api_key, backend_urls, block_size, fresh_prompt, http, metric, proxy_health,
                       proxy_url, rss_kib)
from lab_names import MASTER

SOAK_S = float(os.environ.get("PD_SOAK_SECONDS", "60"))
LEVELS = (1, 4, 8)
# Growth allowed from the first sample (after a warm-up level) to the last: far below a leak of one
# buffer per request (thousands of requests), above allocator noise.
PROXY_GROWTH_KIB = 16 * 1024
MASTER_GROWTH_KIB = 32 * 1024


@pytest.fixture(scope="module")
def soak():
    proxy = proxy_url()
    assert proxy_health(proxy)[0] == 200
    key = api_key()
    prefill = backend_urls(proxy, "prefill")[0]
    block = block_size(backend_urls(proxy, "decode")[0])
    # A fixed set, so that the store holds the same keys throughout: the master's memory has no reason to grow.
    prompts = [fresh_prompt(prefill, tokens)[0] for tokens in (block + 1, 2 * block + 1, 3 * block + 1, 40)]
    return {"proxy": proxy, "key": key, "prompts": prompts}


def proxy_metrics(proxy):
    status, text = http("GET", proxy + "/metrics", timeout=10)
    assert status == 200
    return text


def test_soak_through_the_proxy(soak):
    proxy, key, prompts = soak["proxy"], soak["key"], soak["prompts"]
    with Traffic(proxy, key, prompts, concurrency=2) as warm_up:
        time.sleep(5)
    assert not [o for o in warm_up.outcomes if o.error], warm_up.outcomes
    requests_before = metric(proxy_metrics(proxy), "pd_proxy_requests_total")
    memory = [(rss_kib(MASTER, "pd-proxy"), rss_kib(MASTER, "mooncake-master"))]
    outcomes, figures = [], []
    for level in LEVELS:
        with Traffic(proxy, key, prompts, concurrency=level, max_tokens=16) as traffic:
            time.sleep(SOAK_S / len(LEVELS))
        outcomes += traffic.outcomes
        memory.append((rss_kib(MASTER, "pd-proxy"), rss_kib(MASTER, "mooncake-master")))
        seconds = sorted(o.seconds for o in traffic.outcomes)
        figures.append(f"c={level}: {len(seconds)} requests, {len(seconds) / (SOAK_S / len(LEVELS)):.1f}/s, "
                       f"p50 {seconds[len(seconds) // 2]:.2f}s, max {seconds[-1]:.2f}s")
    text = proxy_metrics(proxy)
    status, health = proxy_health(proxy)
    print(f"soak {SOAK_S:.0f}s: " + "; ".join(figures))
    print("RSS KiB (proxy, master) after warm-up and each level: " + ", ".join(f"{p}/{m}" for p, m in memory))
    failed = [o for o in outcomes if o.error]
    assert not failed, f"{len(failed)} of {len(outcomes)} requests failed: {failed[:5]}"
    assert {o.kind for o in outcomes} == {"completions", "completions-stream", "chat", "chat-stream"}
    # Every request counted once, and nothing left in flight anywhere.
    assert metric(text, "pd_proxy_requests_total") - requests_before == len(outcomes)
    assert metric(text, "pd_proxy_requests_in_progress") == 0
    assert metric(text, "pd_proxy_backend_inflight") == 0
    assert status == 200 and all(b["inflight"] == 0 for role in ("prefill", "decode")
                                 for b in health[role]["backends"])
    assert memory[-1][0] - memory[0][0] <= PROXY_GROWTH_KIB, memory
    assert memory[-1][1] - memory[0][1] <= MASTER_GROWTH_KIB, memory
