"""The bench and monitoring steps of the scenario, checked on what they left behind.

side_effect.yml ran the monitoring stage (Debian's prometheus on the master node, node exporters on the
engine nodes, the eRDMA textfile timer on an eadm stand-in) and then the bench stage for real: vllm bench
serve through the proxy and against the decode engine, the report written on this machine. Named
test_bench_* so that it runs before test_pd_e2e.py stops the decode engine.
"""
import json
import os
import pathlib
import re
import shutil
import struct
import subprocess
import sys
import time
import urllib.parse

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "lab"))
from demo import http  # noqa: E402  pylint: disable=wrong-import-position
from lab_names import DECODE, MASTER  # noqa: E402  pylint: disable=wrong-import-position

testinfra_hosts = [f"podman://{MASTER}"]

RESULTS = ROOT / ".cache" / "pd_e2e-bench"
BENCH_STEP = ROOT / "molecule" / "pd_e2e" / "bench_step.yml"
DASHBOARD = ROOT / "roles" / "pd_monitoring" / "files" / "grafana" / "dashboards" / "erdma-pd-overview.json"


def inventory_group(group):
    """The hosts of a group of the scenario's inventory (molecule.yml's platforms)."""
    inventory = yaml.safe_load((pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
                                / "ansible_inventory.yml").read_text())
    return list((inventory.get(group) or {}).get("hosts") or {})


def engine_hosts():
    """The prefill and decode hosts of the scenario's inventory."""
    return inventory_group("prefill") + inventory_group("decode")


def exporter_hosts():
    """The engine hosts that run a node exporter: all but the container-runtime host, which runs no systemd
    (monitoring_step.yml)."""
    return [h for h in engine_hosts() if h not in inventory_group("podman_engines")]


def node_ip(name):
    out = subprocess.run(["podman", "inspect", "--format",
                          "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name],
                         capture_output=True, text=True, check=True, timeout=30)
    return out.stdout.strip()


@pytest.fixture(scope="module", name="run")
def fixture_run():
    runs = sorted(d for d in RESULTS.glob("*-pd_e2e") if d.is_dir())
    assert runs, f"no bench run directory in {RESULTS}"
    return runs[-1]


@pytest.fixture(scope="module", name="summary")
def fixture_summary(run):
    return json.loads((run / "summary.json").read_text())


def test_run_directory_holds_every_series_with_its_result_and_metrics(run):
    facts = json.loads((run / "run.json").read_text())
    names = [s["name"] for s in facts["series"]]
    assert names == ["pd-c1", "pd-c4", "baseline-c1", "baseline-c4"]
    assert facts["connector"] == "mooncake_store" and facts["model"] == "tiny"
    assert facts["versions"]["vllm"] and "not read" in facts["erdma_counters"]
    for name in names:
        series = run / name
        result = json.loads((series / "result.json").read_text())
        assert result["num_prompts"] == 24 and result["max_concurrency"] == int(name[-1])
        for when in ("metrics-before", "metrics-after"):
            present = {p.stem for p in (series / when).glob("*.prom")}
            assert {"proxy", "master"} <= present and any(p.startswith("decode-") for p in present), present


def test_report_numbers_are_the_ones_in_vllms_json(run, summary):
    text = (run / "report.md").read_text()
    for row in summary["series"]:
        result = json.loads((run / row["series"] / "result.json").read_text())
        for key in ("mean_ttft_ms", "p50_ttft_ms", "p90_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "p99_tpot_ms",
                    "mean_itl_ms", "p99_itl_ms", "request_throughput", "output_throughput"):
            assert row[key] == result[key], (row["series"], key)
        assert row["success_rate"] == result["completed"] / result["num_prompts"] == 1.0
        line = next(l for l in text.splitlines() if f"| {row['series']} | {row['target']} |" in l)
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[6:12] == [f"{result['request_throughput']:.2f}", f"{result['output_throughput']:.2f}",
                               f"{result['mean_ttft_ms']:.2f}", f"{result['p50_ttft_ms']:.2f}",
                               f"{result['p90_ttft_ms']:.2f}", f"{result['p99_ttft_ms']:.2f}"], line
    print(text)


def test_decode_loaded_the_prompts_from_the_store_through_the_proxy(run, summary):
    rows = {row["series"]: row for row in summary["series"]}
    metrics = next((run / "pd-c1" / "metrics-after").glob("decode-*.prom")).read_text()
    block = int(re.search(r'vllm:cache_config_info\{[^}]*[{,]block_size="(\d+)"', metrics).group(1))
    prompt = json.loads((run / "run.json").read_text())["workload"]["input_len"]
    # KV moves in whole blocks and the last prompt token is always computed on D: the most D can load.
    most = (prompt - 1) // block * block / prompt
    for name in ("pd-c1", "pd-c4"):
        row = rows[name]
        loads = [op for op in row["store_operations"] if op["role"] == "decode" and op["operation"] == "load_get"]
        print(f"{name}: KV hit ratio {row['kv_hit_ratio']:.3f} of at most {most:.3f} (block {block}), "
              f"{loads[0]['count'] if loads else 0}/{row['num_prompts']} requests loaded from the store")
        # Not every request: P answers before its asynchronous save is in the store, and a D that looks
        # first computes the prompt itself (README: the PD path's own cost).
        assert loads and 0 < row["kv_hit_ratio"] <= most + 1e-9, row
        assert row["ttft_breakdown_ms"], "no TTFT breakdown: engine or proxy histograms missing"
    assert not rows["baseline-c4"]["kv_hit_ratio"], "the decode engine alone found KV it should not have"


def engine_pid(node, group):
    """The engine's main process as the node sees it: its systemd unit's, or its container's (podman_engines)."""
    if node.backend.get_hostname() in inventory_group("podman_engines"):
        return node.check_output(f"podman inspect --format '{{{{.State.Pid}}}}' vllm-pd-{group}")
    return node.check_output(f"systemctl show --property MainPID --value vllm-pd-{group}")


def test_each_engine_runs_on_the_cores_the_inventory_gives_it(host):
    """vllm_pd_cpu_affinity of the lab (prefill core 0, decode core 1) reaches the engines' processes: the
    venv engines' units (CPUAffinity) and the container engine (--cpuset-cpus)."""
    for group, wanted in (("prefill", "0"), ("decode", "1")):
        for name in inventory_group(group):
            node = host.get_host(f"podman://{name}")
            pid = engine_pid(node, group)
            allowed = node.check_output(f"grep Cpus_allowed_list /proc/{pid}/status").split()[-1]
            assert allowed == wanted, (name, pid, allowed)


def test_pd_ttft_at_concurrency_4_stays_within_its_measured_bound(summary):
    """PD's mean TTFT at concurrency 4 against the decode engine alone, as this scenario measures it.

    Here the bench client runs on the prefill node and floats over both cores, so it takes CPU from both
    engines (each bound to one core): 94.7 vs 31.2 ms (3.0x), then 92.9 vs 23.5 ms (3.95x: the engine alone
    varies more than PD) on 2026-12-01. With the client off the engines' cores the same binding gave 1.4x,
    floating engines 2.1x (README, "The PD path's own cost"). The bound is the 6x that the issue measured
    before any of this work: it catches a PD path that falls back to that (an extra store round trip)."""
    rows = {row["series"]: row for row in summary["series"]}
    pd, alone = rows["pd-c4"]["mean_ttft_ms"], rows["baseline-c4"]["mean_ttft_ms"]
    print(f"mean TTFT at c=4: PD {pd:.1f} ms, decode alone {alone:.1f} ms ({pd / alone:.2f}x); "
          f"at c=1: {rows['pd-c1']['mean_ttft_ms']:.1f} vs {rows['baseline-c1']['mean_ttft_ms']:.1f} ms")
    assert pd < 6 * alone, (pd, alone)


def test_every_chart_is_a_valid_non_trivial_png(run, summary):
    import matplotlib.image  # pylint: disable=import-outside-toplevel
    assert len(summary["charts"]) == 4
    for name in summary["charts"]:
        data = (run / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert width >= 400 and height >= 300 and len(data) > 10000, (name, width, height, len(data))
        pixels = matplotlib.image.imread(run / name)
        assert len({tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::7].tolist()}) > 20, name


def prometheus(expr):
    url = f"http://{node_ip(MASTER)}:9090/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    status, text = http("GET", url, timeout=20)
    assert status == 200, f"{expr}: {status} {text}"
    return json.loads(text)["data"]["result"]


def test_prometheus_scrapes_every_target_of_the_inventory():
    status, text = http("GET", f"http://{node_ip(MASTER)}:9090/api/v1/targets", timeout=20)
    assert status == 200
    targets = json.loads(text)["data"]["activeTargets"]
    jobs = {}
    for target in targets:
        jobs.setdefault(target["labels"]["job"], []).append(target["health"])
    assert sorted(jobs) == ["mooncake_master", "node", "pd_proxy", "prometheus", "vllm"]
    # One vllm target per engine and one node exporter per engine host that runs one.
    engines = engine_hosts()
    assert len(jobs["vllm"]) == len(engines) and len(jobs["node"]) == len(exporter_hosts()), (jobs, engines)
    assert all(h == "up" for healths in jobs.values() for h in healths), jobs


def test_every_dashboard_panel_returns_data_after_the_bench_run():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    empty, shown = [], []
    deadline = time.monotonic() + 60
    for panel in panels:
        while True:
            answered = {t["expr"]: prometheus(t["expr"]) for t in panel["targets"]}
            if any(answered.values()) or time.monotonic() > deadline:
                break
            time.sleep(5)  # a rate needs two scrapes after the run
        if not any(answered.values()):
            empty.append(panel["title"])
        for expr, result in answered.items():
            shown.append(f"{panel['title']}: {expr} -> {len(result)} series"
                         + ("" if result else " (no data: see the role README)"))
    print("\n".join(shown))
    assert not empty, f"panels without data: {empty}"


def test_erdma_counters_reach_prometheus_from_the_stand_in():
    stats = prometheus('erdma_stat_total{counter="connect_failed_cnt"}')
    assert len(stats) == len(exporter_hosts()) and all(float(s["value"][1]) == 2 for s in stats), stats
    assert {s["metric"]["device"] for s in prometheus("erdma_port_active == 1")} == {"erdma_0"}


def test_monitoring_binds_to_the_lab_address_only(host):
    ip = node_ip(MASTER)
    local = [line.split()[3] for line in host.check_output("ss -Hltn 'sport = :9090'").splitlines()]
    assert local == [f"{ip}:9090"]
    decode = host.get_host(f"podman://{DECODE}")
    listen = [line.split()[3] for line in decode.check_output("ss -Hltn 'sport = :9100'").splitlines()]
    assert listen == [f"{node_ip(DECODE)}:9100"]
    text = decode.file("/var/lib/prometheus/node-exporter/erdma.prom").content_string
    assert re.search(r'^erdma_eadm_up\{device="erdma_0"\} 1$', text, re.M)


def test_a_missed_slo_turns_the_stage_red_naming_the_number_and_the_threshold(run, summary):
    """The stage again on a copy of the run (pd_bench_report_from: nothing is benchmarked), with a p99 TTFT
    objective half of what PD measured at c=4: the stage fails and says which series, number and threshold."""
    measured = next(row for row in summary["series"] if row["series"] == "pd-c4")
    threshold = round(measured["p99_ttft_ms"] / 2, 2)
    again = RESULTS / f"{run.name}-slo"
    shutil.rmtree(again, ignore_errors=True)
    shutil.copytree(run, again)
    inventory = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"),
               ANSIBLE_ROLES_PATH=str(ROOT / "roles"), MOLECULE_PROJECT_DIRECTORY=str(ROOT), ANSIBLE_FORCE_COLOR="0")
    out = subprocess.run([str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
                          str(BENCH_STEP), "-e", f"pd_bench_report_from={again.name}",
                          "-e", f"pd_bench_slo_p99_ttft_ms={threshold}"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False)
    expected = (f"{measured['run']} pd-c4: p99_ttft is {measured['p99_ttft_ms']:.2f} ms, "
                f"above the SLO of {threshold:.2f} ms")
    assert out.returncode == 2, out.stdout[-3000:]
    failed = [line for line in out.stdout.splitlines() if line.startswith("fatal:")]
    assert len(failed) == 1 and "objective(s) missed" in failed[0] and expected in failed[0], failed
    # Report only: no series ran again (same directories, vLLM's results untouched).
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in run.iterdir())
    assert all((again / d.name / "result.json").read_bytes() == (d / "result.json").read_bytes()
               for d in run.iterdir() if (d / "result.json").exists())
    assert f"MISSED: {expected}" in (again / "report.md").read_text()
    shutil.rmtree(again)
