# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The acceptance report: decode's external KV hits from real /metrics lines, verdicts per part."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.erdma.pd.plugins.module_utils.rdma_devinfo import parse_devinfo
from ansible_collections.erdma.pd.plugins.plugin_utils.acceptance_report import (
    build,
    completion_entry,
    markdown,
    metric_total,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures")


def fixture(*path):
    with open(os.path.join(FIXTURES, *path)) as handle:
        return handle.read()


def engine(**extra):
    entry = {"host": "d1", "reached": True, "stage": "decode", "runtime": "venv", "url": "http://10.0.0.2:7200",
             "ready": True, "health_status": 200, "rdma_expected": False, "wanted_devices": [], "container_devices": []}
    entry.update(extra)
    return entry


STORE = {"ok": True, "protocol": "tcp", "transport": "tcp", "put_ms": 3.1, "get_ms": 2.2, "object_size_mib": 8}


def test_external_hits_are_read_from_real_metrics_lines():
    text = fixture("vllm_metrics", "live_excerpt_external_hits.txt")
    assert metric_total(text, "vllm:external_prefix_cache_hits_total") == 12.0
    # queries_total must not be taken for hits_total, nor *_created for a counter.
    assert metric_total(text, "vllm:external_prefix_cache_queries_total") == 40.0
    assert metric_total(text, "vllm:no_such_metric") is None


def test_completion_entry_is_the_growth_of_the_hits():
    before = fixture("vllm_metrics", "live_excerpt_external_hits.txt")
    after = before.replace("external_prefix_cache_hits_total{engine=\"0\",model_name=\"Qwen/Qwen2.5-Coder-7B-Instruct\"} 12.0",
                           "external_prefix_cache_hits_total{engine=\"0\",model_name=\"Qwen/Qwen2.5-Coder-7B-Instruct\"} 140.0")
    entry = completion_entry(200, {"choices": [{"text": " fox"}]}, "", before, after)
    assert (entry["external_hits"], entry["text"], entry["status"]) == (128.0, " fox", 200)


def test_a_fleet_that_passes():
    completion = {"status": 200, "external_hits": 128.0, "text": " fox", "hits_before": 0.0, "hits_after": 128.0}
    report = build({"problems": []}, [engine()], STORE, completion, "t")
    assert report["passed"] and report["problems"] == []
    assert "decode loaded 128.0 prompt tokens from the store" in markdown(report)


def test_every_failing_part_is_named():
    devices, _warnings = parse_devinfo(fixture("ibv_devinfo", "mlx4_port2_only.txt"))
    engines = [engine(ready=False, health_status=503),
               engine(host="p1", runtime="nerdctl", container="vllm-pd-prefill", rdma_expected=True,
                      wanted_devices=["mlx4_1"], container_devices=devices,
                      container_check_msg="`nerdctl exec vllm-pd-prefill ibv_devinfo -v` rc=0"),
               {"host": "p2", "reached": False}]
    store = dict(STORE, protocol="rdma", transport="tcp")
    completion = {"status": 200, "external_hits": 0.0}
    report = build({"problems": ["p1 -> d1: bandwidth: 3.03 Gb/s is below 20.00 Gb/s"]}, engines, store, completion, "t")
    assert not report["passed"]
    assert report["problems"] == [
        "p1 -> d1: bandwidth: 3.03 Gb/s is below 20.00 Gb/s",
        "d1: http://10.0.0.2:7200 did not answer /health with 200 (503)",
        "p1: inside vllm-pd-prefill, mlx4_1 not visible with a PORT_ACTIVE port (container sees [mlx4_1]; "
        "`nerdctl exec vllm-pd-prefill ibv_devinfo -v` rc=0)",
        "p2: unreachable, the engine was not checked",
        "mooncake store: asked for rdma but the transfer ran over tcp (fallback)",
        "completion: decode loaded no KV from the store (vllm:external_prefix_cache_hits_total did not grow): "
        "the PD path computed the prompt twice",
    ]


def test_missing_groups_are_problems_not_crashes():
    report = build({}, [], None, None, "t")
    assert report["problems"] == [
        "mooncake store: no master host in the inventory (group mooncake_master), no round trip",
        "completion: no proxy host in the inventory (group proxy), no PD completion"]
    assert "No verify report." in markdown(report)
