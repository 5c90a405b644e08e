"""roles/pd_bench and roles/pd_monitoring: defaults, argument_specs and README agree; the dashboard is sound."""
import json
import pathlib
import re
import sys

import pytest
import yaml

# The helper module sits next to this file (the tests run under pytest and ansible-test units).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_files import ROOT, TEXTFILE_FILE, load  # noqa: E402  pylint: disable=wrong-import-position

ROLES = ("pd_bench", "pd_monitoring")
DASHBOARD = ROOT / "roles" / "pd_monitoring" / "files" / "grafana" / "dashboards" / "erdma-pd-overview.json"


def options(role):
    spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return spec["argument_specs"]["main"]["options"]


def readme_rows(role):
    rows = {}
    for line in (ROOT / "roles" / role / "README.md").read_text().splitlines():
        # A pipe inside a cell is written \| (markdown); split on the others.
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 4 and re.fullmatch(rf"`{role}_\w+`", cells[0]):
            rows[cells[0].strip("`")] = {"type": cells[1], "default": cells[2]}
    return rows


def shown(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # a multi-line default is shown on one line
        return '`""`' if value == "" else f"`{' '.join(value.split())}`"
    return f"`{json.dumps(value)}`"


@pytest.mark.parametrize("role", ROLES)
def test_defaults_equal_argument_specs(role):
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
    specified = options(role)
    assert sorted(defaults) == sorted(specified)
    for name, value in defaults.items():
        assert name.startswith(role + "_") and specified[name].get("description"), name
        if specified[name].get("no_log"):
            # Ansible prints a failed role's argument spec with its defaults templated: a secret's
            # default (a lookup of the key) must not be in the spec.
            assert "default" not in specified[name], name
            continue
        assert specified[name].get("default") == value, name


@pytest.mark.parametrize("role", ROLES)
def test_readme_table_equals_argument_specs(role):
    rows, specified = readme_rows(role), options(role)
    assert sorted(rows) == sorted(specified)
    for name, option in specified.items():
        assert rows[name]["type"].startswith(option["type"]), name
        if "default" in option:
            assert rows[name]["default"] == shown(option["default"]), name


def dashboard():
    return json.loads(DASHBOARD.read_text())


def test_every_panel_has_queries_a_unique_id_and_its_own_place():
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = set()
    for panel in panels:
        assert panel["targets"] and all(t["expr"].strip() and t["refId"] for t in panel["targets"]), panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        grid = panel["gridPos"]
        mine = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_the_overview_covers_what_the_issue_asks_for():
    exprs = " ".join(t["expr"] for p in dashboard()["panels"] for t in p["targets"])
    for needed in ("pd_proxy_requests_total", "pd_proxy_errors_total", "pd_proxy_ttft_seconds_bucket",
                   "vllm:inter_token_latency_seconds_bucket", "vllm:external_prefix_cache_hits_total",
                   "master_allocated_bytes", "put_start_requests_total", "get_replica_list_requests_total",
                   "erdma_stat_total", "node_infiniband_port_data_transmitted_bytes_total"):
        assert needed in exprs, needed


def test_proxy_and_erdma_names_in_the_dashboard_are_the_ones_the_code_writes():
    sys.path.insert(0, str(ROOT / "roles" / "pd_proxy" / "files" / "erdma-pd-proxy"))
    from erdma_pd_proxy.backends import Pool  # pylint: disable=import-outside-toplevel,import-error
    from erdma_pd_proxy.metrics import Metrics  # pylint: disable=import-outside-toplevel,import-error
    metrics = Metrics([Pool("decode", ["http://192.0.2.1:7200"], "round_robin")])
    metrics.count_error("prefill", "timeout")
    metrics.count_request("/v1/completions", 200)
    metrics.retries.inc()
    proxy_text = metrics.render().decode()
    written = set(re.findall(r"^([a-z_:]+)(?:\{| )", proxy_text, re.M))
    written |= {name for name, _kind, _help in load(TEXTFILE_FILE, "erdma_textfile").HELP.values()}
    written.add("erdma_textfile_last_run_timestamp_seconds")
    exprs = " ".join(t["expr"] for p in dashboard()["panels"] for t in p["targets"])
    used = set(re.findall(r"\b((?:pd_proxy|erdma)_[a-z_]+)", exprs))
    assert used and used <= written, used - written
