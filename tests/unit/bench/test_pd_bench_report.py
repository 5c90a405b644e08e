"""The bench report generator: numbers from vLLM's result JSON and the metrics, charts, SLO verdicts.

The inputs here are built in vLLM's result layout (`vllm bench serve --save-result`) to pin the logic
(percentiles, ratios, the TTFT breakdown, SLO messages); molecule/pd_e2e checks the generator again on
a real run of the real client against the real lab.
"""
import json
import pathlib
import struct
import subprocess
import sys

import pytest

# The helper module sits next to this file (the tests run under pytest and ansible-test units).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_files import REPORT_FILE, load  # noqa: E402  pylint: disable=wrong-import-position

report = load(REPORT_FILE, "pd_bench_report")


def vllm_result(concurrency, ttft, tpot, itl, completed=24, prompts=24, throughput=10.0):
    """A result.json in the shape vllm bench serve writes (subset of its keys, same names)."""
    out = {"backend": "vllm", "model_id": "tiny", "num_prompts": prompts, "completed": completed,
           "failed": prompts - completed, "max_concurrency": concurrency, "request_rate": float("inf"),
           "duration": prompts / throughput, "request_throughput": throughput,
           "output_throughput": throughput * 16, "total_token_throughput": throughput * 216}
    for name, (mean, p50, p90, p99) in (("ttft", ttft), ("tpot", tpot), ("itl", itl), ("e2el", ttft)):
        out.update({f"mean_{name}_ms": mean, f"median_{name}_ms": p50, f"p50_{name}_ms": p50,
                    f"p90_{name}_ms": p90, f"p99_{name}_ms": p99, f"std_{name}_ms": 1.0})
    return out


def histogram(name, total_s, count, labels=""):
    sep = "," if labels else ""
    return (f'{name}_bucket{{{labels}{sep}le="+Inf"}} {count}\n{name}_sum{{{labels}}} {total_s}\n'
            f'{name}_count{{{labels}}} {count}\n').replace("{}", "")


def write_series(run, name, target, result, before, after, engine_source=""):
    series = run / name
    for when, sources in (("metrics-before", before), ("metrics-after", after)):
        (series / when).mkdir(parents=True)
        for source, text in sources.items():
            (series / when / f"{source}.prom").write_text(text)
    (series / "result.json").write_text(json.dumps(result))
    (series / "series.json").write_text(json.dumps({"name": name, "target": target,
                                                    "engine_source": engine_source}))


def pd_metrics(scale):
    """Proxy, P and D metrics after `scale` requests of known mean phases (before: all zero)."""
    n = 24 * scale
    return {
        "proxy": histogram("pd_proxy_prefill_seconds", 0.060 * n, n) + histogram("pd_proxy_ttft_seconds", 0.100 * n, n)
        + 'pd_proxy_requests_total{endpoint="/v1/completions",status="200"} %d\n' % n,
        "prefill-p1": histogram("vllm:request_queue_time_seconds", 0.010 * n, n)
        + histogram("vllm:request_prefill_time_seconds", 0.030 * n, n)
        + histogram("vllm:mooncake_store_operation_time_seconds", 0.004 * n, n,
                    'engine="0",operation="save_put",status="ok"')
        + 'vllm:mooncake_store_operation_bytes_total{engine="0",operation="save_put",status="ok"} %d\n' % (4096 * n),
        "decode-d1": histogram("vllm:request_queue_time_seconds", 0.005 * n, n)
        + histogram("vllm:request_prefill_time_seconds", 0.020 * n, n)
        + histogram("vllm:mooncake_store_operation_time_seconds", 0.006 * n, n,
                    'engine="0",operation="load_get",status="ok"')
        + "vllm:external_prefix_cache_hits_total %d\n" % (192 * n)
        + "vllm:external_prefix_cache_queries_total %d\n" % (200 * n)
        + 'vllm:prompt_tokens_total{model_name="tiny"} %d\n' % (200 * n),
    }


@pytest.fixture(name="run_dir")
def fixture_run_dir(tmp_path):
    run = tmp_path / "20261201T090000Z-lab"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"label": "lab run", "inventory": "inventories/lab", "model": "tiny",
                                              "connector": "mooncake_store", "versions": {"vllm": "0.32.0"},
                                              "workload": {"input_len": 200}, "note": "CPU lab"}))
    zero = {k: "" for k in pd_metrics(1)}
    pd_result = vllm_result(4, (120.0, 110.0, 180.0, 250.0), (8.0, 8.0, 9.0, 12.0), (8.0, 7.5, 9.5, 14.0),
                            throughput=12.0)
    write_series(run, "pd-c4", "pd", pd_result, zero, pd_metrics(1))
    base_after = {"decode-d1": histogram("vllm:request_queue_time_seconds", 0.002 * 24, 24)
                  + histogram("vllm:request_prefill_time_seconds", 0.015 * 24, 24)}
    base_result = vllm_result(4, (40.0, 38.0, 60.0, 90.0), (6.0, 6.0, 7.0, 9.0), (6.0, 5.5, 7.5, 10.0),
                              completed=23, throughput=20.0)
    write_series(run, "baseline-c4", "baseline", base_result, {"decode-d1": ""}, base_after,
                 engine_source="decode-d1")
    return run


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_numbers_come_from_the_result_and_the_metric_increases(run_dir):
    summary = report.build([run_dir], run_dir, {"p99_ttft_ms": None, "p99_tpot_ms": None, "min_success_rate": None})
    rows = {row["series"]: row for row in summary["series"]}
    pd, base = rows["pd-c4"], rows["baseline-c4"]
    assert pd["p99_ttft_ms"] == 250.0 and pd["p90_itl_ms"] == 9.5 and pd["mean_tpot_ms"] == 8.0
    assert pd["output_throughput"] == 192.0 and pd["max_concurrency"] == 4
    assert pd["success_rate"] == 1.0 and base["success_rate"] == pytest.approx(23 / 24)
    assert pd["kv_hit_ratio"] == pytest.approx(192 / 200)
    assert base["kv_hit_ratio"] is None  # no KV counters scraped for it
    assert pd["store_operations"] == [
        {"role": "prefill", "operation": "save_put", "count": 24, "mean_ms": 4.0, "bytes": 98304},
        {"role": "decode", "operation": "load_get", "count": 24, "mean_ms": 6.0, "bytes": 0}]
    assert base["store_operations"] == []
    parts = dict(pd["ttft_breakdown_ms"])
    # 120 ms at the client = P queue 10 + P prefill 30 + P rest 20 + D queue 5 + D prefill 20 + D rest 15 + 20.
    assert parts == pytest.approx({"P queue": 10, "P prefill + KV save": 30, "P HTTP/tokenize/proxy": 20,
                                   "D queue": 5, "D KV load + last token": 20, "D HTTP/first byte": 15,
                                   "client <-> proxy": 20})
    assert sum(parts.values()) == pytest.approx(pd["mean_ttft_ms"])
    assert dict(base["ttft_breakdown_ms"]) == pytest.approx(
        {"engine queue": 2, "engine prefill": 15, "HTTP/tokenize/first byte": 23})


def test_report_md_holds_the_numbers_and_the_pd_to_baseline_ratios(run_dir):
    report.build([run_dir], run_dir, {"p99_ttft_ms": None, "p99_tpot_ms": None, "min_success_rate": None})
    text = (run_dir / "report.md").read_text()
    assert "| lab run | pd-c4 | pd | 4 | 24 | 1.0000 | 12.00 | 192.00 | 120.00 | 110.00 | 180.00 | 250.00 |" in text
    assert "| lab run | 4 | 3.00x | 2.78x | 0.60x |" in text  # 120/40, 250/90, 192/320
    assert "CPU lab" in text and "No SLO given." in text
    assert "| lab run | pd-c4 | prefill | save_put | 24 | 4.00 | 98304 |" in text
    for name in ("latency.png", "throughput.png", "success_kv.png", "ttft_breakdown.png"):
        assert f"]({name})" in text


def test_pd_cost_sets_each_phase_against_the_single_engines(run_dir):
    report.build([run_dir], run_dir, {"p99_ttft_ms": None, "p99_tpot_ms": None, "min_success_rate": None})
    text = (run_dir / "report.md").read_text()
    # PD 120 = prefill leg 10+30+20 | D queue 5 | D load 20 | rest 15+20; single 40 = queue 2 | prefill 15 | 23.
    assert ("| lab run | 4 | 120.0 | 40.0 | +80.0 | 60.0 / 0.0 (+60.0) | 5.0 / 2.0 (+3.0) | 20.0 / 15.0 (+5.0) | "
            "35.0 / 23.0 (+12.0) |") in text


def test_every_chart_is_a_real_non_trivial_png(run_dir):
    import matplotlib.image  # pylint: disable=import-outside-toplevel
    summary = report.build([run_dir], run_dir, {"p99_ttft_ms": None, "p99_tpot_ms": None, "min_success_rate": None})
    assert summary["charts"] == ["latency.png", "throughput.png", "success_kv.png", "ttft_breakdown.png"]
    for name in summary["charts"]:
        width, height = png_size(run_dir / name)
        assert width >= 400 and height >= 300
        pixels = matplotlib.image.imread(run_dir / name)
        colours = {tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::7].tolist()}
        assert len(colours) > 20, f"{name} looks blank ({len(colours)} colours)"


def test_missed_objectives_name_the_number_and_the_threshold(run_dir):
    slo = {"p99_ttft_ms": 200.0, "p99_tpot_ms": 10.0, "min_success_rate": 0.99}
    misses = report.build([run_dir], run_dir, slo)["slo_misses"]
    assert "lab run pd-c4: p99_ttft is 250.00 ms, above the SLO of 200.00 ms" in misses
    assert "lab run pd-c4: p99_tpot is 12.00 ms, above the SLO of 10.00 ms" in misses
    assert "lab run baseline-c4: success rate is 0.9583 (23/24), below the SLO of 0.9900" in misses
    assert len(misses) == 3
    assert "MISSED: lab run pd-c4: p99_ttft is 250.00 ms" in (run_dir / "report.md").read_text()


def test_cli_exit_status_says_whether_objectives_were_met(run_dir, tmp_path):
    base = [sys.executable, str(REPORT_FILE), str(run_dir)]
    ok = subprocess.run(base + ["--slo-p99-ttft-ms", "1000"], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    missed = subprocess.run(base + ["--slo-p99-ttft-ms", "100"], capture_output=True, text=True, check=False)
    assert missed.returncode == 3
    assert "SLO missed: lab run pd-c4: p99_ttft is 250.00 ms, above the SLO of 100.00 ms" in missed.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = subprocess.run([sys.executable, str(REPORT_FILE), str(empty)], capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "holds no series" in bad.stderr


def test_several_runs_side_by_side(run_dir, tmp_path):
    after = tmp_path / "20261201T100000Z-lab"
    after.mkdir()
    (after / "run.json").write_text(json.dumps({"label": "after fix"}))
    faster = vllm_result(4, (60.0, 55.0, 80.0, 100.0), (8.0, 8.0, 9.0, 12.0), (8.0, 7.5, 9.5, 14.0))
    write_series(after, "pd-c4", "pd", faster, {}, {})
    out = tmp_path / "compare"
    summary = report.build([run_dir, after], out, {"p99_ttft_ms": None, "p99_tpot_ms": None,
                                                   "min_success_rate": None})
    assert [(r["run"], r["series"]) for r in summary["series"]] == [
        ("lab run", "baseline-c4"), ("lab run", "pd-c4"), ("after fix", "pd-c4")]
    text = (out / "report.md").read_text()
    assert "| after fix | pd-c4 | pd | 4 |" in text and "| lab run | pd-c4 | pd | 4 |" in text


def test_prometheus_text_parser_reads_labels_and_skips_comments():
    text = ('# HELP x y\n# TYPE x counter\nvllm:prompt_tokens_total{model_name="tiny",engine="0"} 264.0\n'
            'master_key_count 12\nbroken line\npd_proxy_ttft_seconds_bucket{le="+Inf"} 3 1700000000\n')
    parsed = report.parse_prometheus(text)
    assert report.total(parsed, "vllm:prompt_tokens_total") == 264.0
    assert report.total(parsed, "master_key_count") == 12
    assert report.total(parsed, "pd_proxy_ttft_seconds_bucket", 'le="+Inf"') == 3
    assert "broken" not in parsed
