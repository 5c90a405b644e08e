# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The acceptance report of playbooks/acceptance.yml (controller side only).

One document for a real fleet's first run: the verify stage's report (devices, driver and firmware,
compat mode live and persistent, bandwidth and latency per prefill -> decode pair), the devices each
engine container sees, the engines' readiness, a Mooncake store round trip and one PD completion
through the proxy with the KV blocks that decode loaded from the store.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.erdma.pd.plugins.plugin_utils import rdma_verify_report

HITS_METRIC = "vllm:external_prefix_cache_hits_total"


def metric_total(text, name):
    """Sum of every sample of a Prometheus counter in /metrics text (all label sets); None when absent."""
    total, found = 0.0, False
    pattern = re.compile(r"^%s(?:\{[^}]*\})?\s+([0-9.eE+-]+)\s*$" % re.escape(name))
    for line in (text or "").splitlines():
        match = pattern.match(line.strip())
        if match:
            total += float(match.group(1))
            found = True
    return total if found else None


def _engine_problems(engine):
    problems = []
    if not engine.get("reached"):
        return ["%s: unreachable, the engine was not checked" % engine["host"]]
    if not engine.get("ready"):
        problems.append("%s: %s did not answer /health with 200 (%s)" % (
            engine["host"], engine.get("url"), engine.get("health_status")))
    if engine.get("rdma_expected") and engine.get("runtime") == "nerdctl":
        devices = [d.get("hca_id") for d in engine.get("container_devices") or []]
        active = [d.get("hca_id") for d in engine.get("container_devices") or []
                  if any(p.get("state") == "PORT_ACTIVE" for p in d.get("ports") or [])]
        missing = [name for name in engine.get("wanted_devices") or [] if name not in active]
        if missing:
            problems.append("%s: inside %s, %s not visible with a PORT_ACTIVE port (container sees [%s]; %s)" % (
                engine["host"], engine.get("container"), ", ".join(missing), ", ".join(devices),
                engine.get("container_check_msg") or "ibv_devinfo in the container"))
    return problems


def _store_problems(store):
    if not store:
        return ["mooncake store: no master host in the inventory (group mooncake_master), no round trip"]
    if store.get("failed") or not store.get("ok"):
        return ["mooncake store: the round trip failed: %s" % (store.get("msg") or store.get("failure"))]
    if store.get("protocol") == "rdma" and store.get("transport") not in (None, "rdma"):
        return ["mooncake store: asked for rdma but the transfer ran over %s (fallback)" % store.get("transport")]
    return []


def _completion_problems(completion):
    if not completion:
        return ["completion: no proxy host in the inventory (group proxy), no PD completion"]
    problems = []
    if completion.get("status") != 200:
        problems.append("completion: the proxy answered %s: %s" % (completion.get("status"), completion.get("msg")))
    elif not completion.get("external_hits") or completion["external_hits"] <= 0:
        problems.append("completion: decode loaded no KV from the store (%s did not grow): the PD path computed "
                        "the prompt twice" % HITS_METRIC)
    return problems


def completion_entry(status, body, msg, before_text, after_text):
    """What the completion step measured: status, text and decode's external KV hits during it."""
    before, after = metric_total(before_text, HITS_METRIC), metric_total(after_text, HITS_METRIC)
    text = None
    if isinstance(body, dict) and body.get("choices"):
        text = body["choices"][0].get("text")
    return {"status": status, "text": text, "msg": msg, "hits_before": before, "hits_after": after,
            "external_hits": (after - before) if before is not None and after is not None else None}


def build(verify, engines, store, completion, generated_at):
    """The acceptance report: every part with its verdict, and all the problems in one list."""
    problems = list(verify.get("problems") or [])
    for engine in engines:
        problems += _engine_problems(engine)
    problems += _store_problems(store)
    problems += _completion_problems(completion)
    return {"generated_at": generated_at, "verify": verify, "engines": engines, "store": store or {},
            "completion": completion or {}, "problems": problems, "passed": not problems}


def _cell(value):
    return "" if value is None else str(value).replace("|", "/").replace("\n", " ")


def markdown(report):
    """The acceptance report as Markdown: the verify report, then engines, store, completion."""
    lines = ["# erdma.pd acceptance", "",
             "Generated %s: **%s**." % (report["generated_at"], "PASSED" if report["passed"] else "FAILED"), ""]
    lines += ["## Engines", "", "| host | stage | runtime | ready | devices in the container | check |",
              "| --- | --- | --- | --- | --- | --- |"]
    for engine in report["engines"]:
        devices = ", ".join("%s (%s)" % (d.get("hca_id"), ", ".join(str(p.get("state")) for p in d.get("ports") or []))
                            for d in engine.get("container_devices") or [])
        lines.append("| %s | %s | %s | %s | %s | %s |" % (
            engine["host"], _cell(engine.get("stage")), _cell(engine.get("runtime")), _cell(engine.get("ready")),
            _cell(devices) or "none", _cell(engine.get("container_check_msg"))))
    store = report["store"]
    lines += ["", "## Mooncake store round trip", "",
              "protocol %s, transport %s: %s (put %s ms, get %s ms, %s MiB)." % (
                  _cell(store.get("protocol")), _cell(store.get("transport")),
                  "ok" if store.get("ok") else "FAILED: " + _cell(store.get("msg")),
                  _cell(store.get("put_ms")), _cell(store.get("get_ms")), _cell(store.get("object_size_mib")))]
    completion = report["completion"]
    lines += ["", "## One PD completion through the proxy", "",
              "HTTP %s; decode loaded %s prompt tokens from the store (%s grew from %s to %s); text: %s" % (
                  _cell(completion.get("status")), _cell(completion.get("external_hits")), HITS_METRIC,
                  _cell(completion.get("hits_before")), _cell(completion.get("hits_after")),
                  _cell(completion.get("text")))]
    if report["problems"]:
        lines += ["", "## Problems", ""] + ["- " + _cell(problem) for problem in report["problems"]]
    lines += ["", "---", ""]
    has_verify = report["verify"].get("links") is not None
    verify = rdma_verify_report.markdown(report["verify"]) if has_verify else "No verify report.\n"
    return "\n".join(lines) + "\n" + verify
