# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn erdma.pd bench run directories into report.md, PNG charts and summary.json.

    pd_bench_report.py RUN_DIR                          report inside RUN_DIR
    pd_bench_report.py RUN_A RUN_B --out DIR            before/after side by side
    pd_bench_report.py RUN_DIR --slo-p99-ttft-ms 2000 --slo-p99-tpot-ms 100 --slo-min-success-rate 0.99

A run directory (written by the role erdma.pd.pd_bench) holds run.json (the run's facts) and one
directory per series (one target at one concurrency or request rate) with vLLM's result.json and the
Prometheus metrics of the proxy, the engines and the Mooncake master before and after the series.
The charts need matplotlib; everything else is the standard library. Exit status: 0, or 3 when an SLO
is missed (every miss is printed with the number and its threshold), 2 on unreadable input.
"""
import argparse
import json
import math
import pathlib
import re
import sys

PERCENTILES = ("p50", "p90", "p99")
LATENCIES = ("ttft", "tpot", "itl", "e2el")
# Histograms whose mean (sum/count over the series) explains where a request's time goes.
ENGINE_HISTOGRAMS = {
    "queue": "vllm:request_queue_time_seconds",
    "prefill": "vllm:request_prefill_time_seconds",
    "ttft": "vllm:time_to_first_token_seconds",
    "e2e": "vllm:e2e_request_latency_seconds",
}
PROXY_HISTOGRAMS = {
    "prefill": "pd_proxy_prefill_seconds",
    "ttft": "pd_proxy_ttft_seconds",
    "decode": "pd_proxy_decode_seconds",
}
# vLLM's MooncakeStoreConnector times every store call (operation save_exists, save_put, load_get, ...).
STORE_OPERATION = "vllm:mooncake_store_operation_time_seconds"
STORE_BYTES = "vllm:mooncake_store_operation_bytes_total"
_SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(\{[^}]*\})?\s+([-+0-9.eEinfaINFA]+)(?:\s+\d+)?$")


# ---------------------------------------------------------------- reading
def parse_prometheus(text):
    """Prometheus text format -> {name: [(labels_text, value)]}; comments and junk lines skipped."""
    samples = {}
    for line in (text or "").splitlines():
        match = _SAMPLE.match(line.strip())
        if match:
            try:
                value = float(match.group(3))
            except ValueError:
                continue
            samples.setdefault(match.group(1), []).append((match.group(2) or "", value))
    return samples


def total(samples, name, labels_like=""):
    """Sum of a metric's samples (optionally only those whose labels contain `labels_like`)."""
    return sum(v for labels, v in samples.get(name, []) if labels_like in labels)


def read_json(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def read_metrics(directory):
    """{source name: parsed samples} for every *.prom file of a metrics directory."""
    found = {}
    if directory.is_dir():
        for path in sorted(directory.glob("*.prom")):
            found[path.stem] = parse_prometheus(path.read_text(encoding="utf-8", errors="replace"))
    return found


def load_series(directory):
    """One series directory: vLLM's result plus its metrics before and after."""
    meta = read_json(directory / "series.json") if (directory / "series.json").exists() else {}
    return {
        "name": directory.name,
        "meta": meta,
        "result": read_json(directory / "result.json"),
        "before": read_metrics(directory / "metrics-before"),
        "after": read_metrics(directory / "metrics-after"),
    }


def load_run(directory):
    directory = pathlib.Path(directory)
    facts = read_json(directory / "run.json") if (directory / "run.json").exists() else {}
    series = [load_series(d) for d in sorted(directory.iterdir()) if d.is_dir() and (d / "result.json").exists()]
    if not series:
        raise ValueError(f"{directory} holds no series (no */result.json): is it a bench run directory?")
    return {"dir": directory, "label": facts.get("label") or directory.name, "facts": facts, "series": series}


# ---------------------------------------------------------------- numbers
def delta(series, source_prefix, name, labels_like=""):
    """A counter's increase over the series, summed over the sources whose name starts with the prefix."""
    increase = 0.0
    for source, after in series["after"].items():
        if source.startswith(source_prefix):
            before = series["before"].get(source, {})
            increase += total(after, name, labels_like) - total(before, name, labels_like)
    return increase


def histogram_mean_ms(series, source_prefix, histogram, labels_like=""):
    count = delta(series, source_prefix, histogram + "_count", labels_like)
    return 1000.0 * delta(series, source_prefix, histogram + "_sum", labels_like) / count if count > 0 else None


def store_operations(series):
    """The KV connector's store calls over the series, per engine role and operation:
    [{role, operation, count, mean_ms, bytes}] (empty when the engines expose no such metric)."""
    found = []
    for role in ("prefill", "decode"):
        operations = set()
        for source, samples in series["after"].items():
            if source.startswith(role):
                for labels, _value in samples.get(STORE_OPERATION + "_count", []):
                    match = re.search(r'operation="([^"]+)"', labels)
                    if match:
                        operations.add(match.group(1))
        for operation in sorted(operations):
            label = f'operation="{operation}"'
            count = delta(series, role, STORE_OPERATION + "_count", label)
            if count > 0:
                found.append({"role": role, "operation": operation, "count": int(count),
                              "mean_ms": round(histogram_mean_ms(series, role, STORE_OPERATION, label), 3),
                              "bytes": int(delta(series, role, STORE_BYTES, label))})
    return found


def success_rate(result):
    completed = result.get("completed", 0)
    prompts = result.get("num_prompts") or completed + result.get("failed", 0)
    return completed / prompts if prompts else 0.0


def kv_hit_ratio(series):
    """Share of the decode engines' prompt tokens that came from the KV store (None without metrics)."""
    hits = delta(series, "decode", "vllm:external_prefix_cache_hits_total")
    queries = delta(series, "decode", "vllm:external_prefix_cache_queries_total")
    if queries <= 0:
        queries = delta(series, "decode", "vllm:prompt_tokens_total")
    return hits / queries if queries > 0 else None


def ttft_breakdown(series):
    """Mean TTFT of the series split into the parts the metrics can tell apart (ms), in path order."""
    target = series["meta"].get("target", "pd")
    client = series["result"].get("mean_ttft_ms")
    parts = []
    if target == "pd":
        proxy_prefill = histogram_mean_ms(series, "proxy", PROXY_HISTOGRAMS["prefill"])
        proxy_ttft = histogram_mean_ms(series, "proxy", PROXY_HISTOGRAMS["ttft"])
        p_queue = histogram_mean_ms(series, "prefill", ENGINE_HISTOGRAMS["queue"])
        p_prefill = histogram_mean_ms(series, "prefill", ENGINE_HISTOGRAMS["prefill"])
        d_queue = histogram_mean_ms(series, "decode", ENGINE_HISTOGRAMS["queue"])
        d_prefill = histogram_mean_ms(series, "decode", ENGINE_HISTOGRAMS["prefill"])
        if None in (proxy_prefill, proxy_ttft, p_queue, p_prefill, d_queue, d_prefill, client):
            return []
        parts = [
            ("P queue", p_queue),
            ("P prefill + KV save", p_prefill),
            ("P HTTP/tokenize/proxy", proxy_prefill - p_queue - p_prefill),
            ("D queue", d_queue),
            ("D KV load + last token", d_prefill),
            ("D HTTP/first byte", proxy_ttft - proxy_prefill - d_queue - d_prefill),
            ("client <-> proxy", client - proxy_ttft),
        ]
    else:
        source = series["meta"].get("engine_source", "decode")
        queue = histogram_mean_ms(series, source, ENGINE_HISTOGRAMS["queue"])
        prefill = histogram_mean_ms(series, source, ENGINE_HISTOGRAMS["prefill"])
        if None in (queue, prefill, client):
            return []
        parts = [("engine queue", queue), ("engine prefill", prefill),
                 ("HTTP/tokenize/first byte", client - queue - prefill)]
    return [(name, round(value, 3)) for name, value in parts]


def summarise(run, series):
    result = series["result"]
    meta = series["meta"]
    row = {
        "run": run["label"],
        "series": series["name"],
        "target": meta.get("target", "pd"),
        "max_concurrency": result.get("max_concurrency"),
        "request_rate": result.get("request_rate"),
        "num_prompts": result.get("num_prompts"),
        "completed": result.get("completed"),
        "success_rate": round(success_rate(result), 6),
        "duration_s": result.get("duration"),
        "request_throughput": result.get("request_throughput"),
        "output_throughput": result.get("output_throughput"),
        "total_token_throughput": result.get("total_token_throughput"),
        "kv_hit_ratio": kv_hit_ratio(series),
        "ttft_breakdown_ms": ttft_breakdown(series),
        "store_operations": store_operations(series),
    }
    for latency in LATENCIES:
        row[f"mean_{latency}_ms"] = result.get(f"mean_{latency}_ms")
        for pct in PERCENTILES:
            row[f"{pct}_{latency}_ms"] = result.get(f"{pct}_{latency}_ms")
    if row["p50_ttft_ms"] is None:
        row["p50_ttft_ms"] = result.get("median_ttft_ms")
    return row


def check_slo(rows, slo):
    """Human messages, one per series and objective missed."""
    misses = []
    for row in rows:
        where = f"{row['run']} {row['series']}"
        for key, limit, unit in (("p99_ttft_ms", slo.get("p99_ttft_ms"), "ms"),
                                 ("p99_tpot_ms", slo.get("p99_tpot_ms"), "ms")):
            if limit is not None and (row[key] is None or row[key] > limit):
                misses.append(f"{where}: {key.replace('_ms', '')} is {fmt(row[key])} {unit}, "
                              f"above the SLO of {fmt(limit)} {unit}")
        floor = slo.get("min_success_rate")
        if floor is not None and row["success_rate"] < floor:
            misses.append(f"{where}: success rate is {row['success_rate']:.4f} "
                          f"({row['completed']}/{row['num_prompts']}), below the SLO of {floor:.4f}")
    return misses


# ---------------------------------------------------------------- rendering
def fmt(value, digits=2):
    if value is None:
        return "—"
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def short(row):
    rate = row["request_rate"]
    load = f"c={row['max_concurrency']}" if row["max_concurrency"] else ""
    if rate not in (None, "inf") and not (isinstance(rate, float) and math.isinf(rate)):
        load = (load + " " if load else "") + f"rate={rate}"
    return f"{row['run']}\n{row['target']} {load}".strip()


def stamp(fig, note):
    """Lay the figure out, with the runs' note as a line of small print under it."""
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=7, color="dimgray", wrap=True)
        fig.tight_layout(rect=(0, 0.04, 1, 1))
    else:
        fig.tight_layout()


def charts(rows, out, note=""):
    """The PNG charts of the report; returns [(file name, caption)]. `note` (what the runs ran on, from
    pd_bench_run_note) is printed on every chart, so that a chart shown alone still says it."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    made = []
    labels = [short(r) for r in rows]
    width = max(6.0, 1.6 * len(rows) + 2)

    fig, axes = plt.subplots(1, 3, figsize=(3 * width / 1.5, 4.2))
    for axis, latency in zip(axes, ("ttft", "tpot", "itl")):
        step = 0.8 / len(PERCENTILES)
        for i, pct in enumerate(PERCENTILES):
            values = [r[f"{pct}_{latency}_ms"] or 0 for r in rows]
            axis.bar([x + i * step for x in range(len(rows))], values, step, label=pct)
        axis.set_xticks([x + step for x in range(len(rows))], labels, fontsize=7)
        axis.set_title(f"{latency.upper()} (ms)")
        axis.legend(fontsize=7)
    stamp(fig, note)
    fig.savefig(out / "latency.png", dpi=100)
    plt.close(fig)
    made.append(("latency.png", "TTFT, TPOT and ITL percentiles per series (ms)"))

    fig, (left, right) = plt.subplots(1, 2, figsize=(width * 1.4, 4.2))
    left.bar(labels, [r["output_throughput"] or 0 for r in rows], color="tab:green")
    left.set_title("output tokens/s")
    right.bar(labels, [r["request_throughput"] or 0 for r in rows], color="tab:blue")
    right.set_title("requests/s")
    for axis in (left, right):
        axis.tick_params(axis="x", labelsize=7)
    stamp(fig, note)
    fig.savefig(out / "throughput.png", dpi=100)
    plt.close(fig)
    made.append(("throughput.png", "Throughput per series"))

    fig, axis = plt.subplots(figsize=(width, 4.2))
    step = 0.4
    axis.bar(list(range(len(rows))), [r["success_rate"] for r in rows], step, label="success rate")
    axis.bar([x + step for x in range(len(rows))], [r["kv_hit_ratio"] or 0 for r in rows], step,
             label="decode KV hit ratio (from the store)")
    axis.set_xticks([x + step / 2 for x in range(len(rows))], labels, fontsize=7)
    axis.set_ylim(0, 1.05)
    axis.legend(fontsize=7, loc="lower right")
    stamp(fig, note)
    fig.savefig(out / "success_kv.png", dpi=100)
    plt.close(fig)
    made.append(("success_kv.png", "Success rate and the decode engines' KV hit ratio per series"))

    broken = [r for r in rows if r["ttft_breakdown_ms"]]
    if broken:
        fig, axis = plt.subplots(figsize=(width, 4.6))
        names = []
        for row in broken:
            names += [n for n, _v in row["ttft_breakdown_ms"] if n not in names]
        bottoms = [0.0] * len(broken)
        colours = plt.get_cmap("tab10")
        for k, name in enumerate(names):
            values = [max(0.0, dict(r["ttft_breakdown_ms"]).get(name, 0.0)) for r in broken]
            axis.bar([short(r) for r in broken], values, bottom=bottoms, label=name, color=colours(k % 10))
            bottoms = [b + v for b, v in zip(bottoms, values)]
        axis.set_ylabel("mean ms")
        axis.set_title("Where the mean TTFT goes")
        axis.tick_params(axis="x", labelsize=7)
        axis.legend(fontsize=7, loc="upper left")
        stamp(fig, note)
        fig.savefig(out / "ttft_breakdown.png", dpi=100)
        plt.close(fig)
        made.append(("ttft_breakdown.png", "Mean TTFT split by phase (engine and proxy histograms)"))
    return made


def comparison(rows):
    """PD vs baseline at the same load, within each run: the ratio of mean and p99 TTFT and throughput."""
    lines = []
    for row in rows:
        if row["target"] != "pd":
            continue
        twin = next((b for b in rows if b["target"] == "baseline" and b["run"] == row["run"]
                     and b["max_concurrency"] == row["max_concurrency"]
                     and b["request_rate"] == row["request_rate"]), None)
        if twin and twin["mean_ttft_ms"] and twin["p99_ttft_ms"] and twin["output_throughput"]:
            lines.append(f"| {row['run']} | {row['max_concurrency']} | "
                         f"{row['mean_ttft_ms'] / twin['mean_ttft_ms']:.2f}x | "
                         f"{row['p99_ttft_ms'] / twin['p99_ttft_ms']:.2f}x | "
                         f"{row['output_throughput'] / twin['output_throughput']:.2f}x |")
    if not lines:
        return []
    return ["## PD against the single engine", "",
            "| run | concurrency | mean TTFT PD/baseline | p99 TTFT PD/baseline | output tok/s PD/baseline |",
            "|---|---:|---:|---:|---:|"] + lines + [""]


def pd_cost(rows):
    """What the PD path adds to the mean TTFT against the single engine at the same load, phase by phase:
    the prefill leg has no twin in the single engine (it is all added), the decode engine's queue and its
    KV load + last token stand against the single engine's queue and prefill, and the rest (HTTP, the
    proxy, the client) against the single engine's HTTP, tokenization and first byte."""
    lines = []
    for row in rows:
        twin = next((b for b in rows if b["target"] == "baseline" and b["run"] == row["run"]
                     and b["max_concurrency"] == row["max_concurrency"]
                     and b["request_rate"] == row["request_rate"]), None)
        if row["target"] != "pd" or not twin or not row["ttft_breakdown_ms"] or not twin["ttft_breakdown_ms"]:
            continue
        pd, alone = dict(row["ttft_breakdown_ms"]), dict(twin["ttft_breakdown_ms"])
        prefill_leg = pd["P queue"] + pd["P prefill + KV save"] + pd["P HTTP/tokenize/proxy"]
        rest = pd["D HTTP/first byte"] + pd["client <-> proxy"]
        cells = [(prefill_leg, 0.0), (pd["D queue"], alone["engine queue"]),
                 (pd["D KV load + last token"], alone["engine prefill"]), (rest, alone["HTTP/tokenize/first byte"])]
        lines.append(f"| {row['run']} | {row['max_concurrency']} | {fmt(row['mean_ttft_ms'], 1)} | "
                     f"{fmt(twin['mean_ttft_ms'], 1)} | {row['mean_ttft_ms'] - twin['mean_ttft_ms']:+.1f} | "
                     + " | ".join(f"{a:.1f} / {b:.1f} ({a - b:+.1f})" for a, b in cells) + " |")
    if not lines:
        return []
    return ["## What the PD path adds to the mean TTFT (ms, PD / single engine (difference))", "",
            "The prefill leg (P queue + P prefill with the KV save + its HTTP through the proxy) has no twin in "
            "the single engine; D's queue and its KV load + last token stand against the single engine's queue "
            "and prefill; the rest (D's HTTP, the proxy's first byte, the client) against the single engine's "
            "HTTP, tokenization and first byte.", "",
            "| run | concurrency | PD | single | added | prefill leg | D queue | D KV load + last token | rest |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"] + lines + [""]


def markdown(runs, rows, made, misses, slo):
    out = ["# erdma.pd benchmark report", ""]
    for run in runs:
        facts = run["facts"]
        out.append(f"- **{run['label']}** (`{run['dir'].name}`): inventory `{facts.get('inventory', '?')}`, "
                   f"model `{facts.get('model', '?')}`, connector `{facts.get('connector', '?')}`, "
                   f"vLLM {facts.get('versions', {}).get('vllm', '?')}, "
                   f"workload {json.dumps(facts.get('workload', {}), sort_keys=True)}")
        if facts.get("note"):
            out.append(f"  - {facts['note']}")
    out += ["", "## Results", "",
            "| run | series | target | conc. | prompts | success | req/s | out tok/s | mean TTFT ms | "
            "p50 TTFT | p90 TTFT | p99 TTFT | mean TPOT ms | p99 TPOT | mean ITL ms | p99 ITL | KV hit ratio |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['run']} | {r['series']} | {r['target']} | {fmt(r['max_concurrency'])} | "
                   f"{fmt(r['num_prompts'])} | {r['success_rate']:.4f} | {fmt(r['request_throughput'])} | "
                   f"{fmt(r['output_throughput'])} | {fmt(r['mean_ttft_ms'])} | {fmt(r['p50_ttft_ms'])} | "
                   f"{fmt(r['p90_ttft_ms'])} | {fmt(r['p99_ttft_ms'])} | {fmt(r['mean_tpot_ms'])} | "
                   f"{fmt(r['p99_tpot_ms'])} | {fmt(r['mean_itl_ms'])} | {fmt(r['p99_itl_ms'])} | "
                   f"{fmt(r['kv_hit_ratio'], 4)} |")
    out.append("")
    out += comparison(rows)
    out += pd_cost(rows)
    broken = [r for r in rows if r["ttft_breakdown_ms"]]
    if broken:
        out += ["## Where the time goes (mean TTFT by phase, ms)", "",
                "From the engines' and the proxy's histograms over each series (sum/count of the increase). "
                "KV save runs inside P's prefill step and KV load inside D's, so they are part of those rows.", ""]
        for r in broken:
            parts = ", ".join(f"{name} {value:.1f}" for name, value in r["ttft_breakdown_ms"])
            out.append(f"- {r['run']} {r['series']}: client mean TTFT {fmt(r['mean_ttft_ms'])} = {parts}")
        out.append("")
    stored = [r for r in rows if r["store_operations"]]
    if stored:
        out += ["## KV store calls (MooncakeStoreConnector)", "",
                "Every call of the engines' KV connector to Mooncake over the series: P saves (save_*), D loads "
                "(load_*). A call may overlap the engine's compute, so these are not added to the breakdown.", "",
                "| run | series | engine | operation | calls | mean ms | bytes |", "|---|---|---|---|---:|---:|---:|"]
        for r in stored:
            out += [f"| {r['run']} | {r['series']} | {op['role']} | {op['operation']} | {op['count']} | "
                    f"{op['mean_ms']:.2f} | {op['bytes']} |" for op in r["store_operations"]]
        out.append("")
    out += ["## Charts", ""] + [f"![{caption}]({name})\n\n{caption}\n" for name, caption in made]
    out += ["## SLO", ""]
    if not any(v is not None for v in slo.values()):
        out.append("No SLO given.")
    elif misses:
        out += [f"- MISSED: {m}" for m in misses]
    else:
        out.append("Met: " + ", ".join(f"{k} {fmt(v)}" for k, v in slo.items() if v is not None) + ".")
    return "\n".join(out) + "\n"


def build(run_dirs, out_dir, slo):
    runs = [load_run(d) for d in run_dirs]
    rows = [summarise(run, series) for run in runs for series in run["series"]]
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    notes = [run["facts"]["note"] for run in runs if run["facts"].get("note")]
    made = charts(rows, out_dir, " / ".join(dict.fromkeys(notes)))
    misses = check_slo(rows, slo)
    (out_dir / "report.md").write_text(markdown(runs, rows, made, misses, slo), encoding="utf-8")
    summary = {"runs": [str(r["dir"]) for r in runs], "series": rows, "slo": slo, "slo_misses": misses,
               "charts": [name for name, _caption in made]}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=pathlib.Path, help="bench run directories")
    parser.add_argument("--out", type=pathlib.Path, help="output directory (default: the only run directory)")
    parser.add_argument("--slo-p99-ttft-ms", type=float)
    parser.add_argument("--slo-p99-tpot-ms", type=float)
    parser.add_argument("--slo-min-success-rate", type=float)
    args = parser.parse_args(argv)
    if args.out is None and len(args.runs) > 1:
        parser.error("several run directories need --out")
    slo = {"p99_ttft_ms": args.slo_p99_ttft_ms, "p99_tpot_ms": args.slo_p99_tpot_ms,
           "min_success_rate": args.slo_min_success_rate}
    try:
        summary = build(args.runs, args.out or args.runs[0], slo)
    except (OSError, ValueError, KeyError) as exc:
        print(f"pd_bench_report: {exc}", file=sys.stderr)
        return 2
    print(f"report: {(args.out or args.runs[0]) / 'report.md'} ({len(summary['series'])} series, "
          f"charts {', '.join(summary['charts'])})")
    for miss in summary["slo_misses"]:
        print(f"SLO missed: {miss}")
    return 3 if summary["slo_misses"] else 0


if __name__ == "__main__":
    sys.exit(main())
