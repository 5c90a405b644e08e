# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Save the Prometheus metrics of several services, one file each: OUT_DIR/NAME.prom.

    pd_bench_scrape.py OUT_DIR proxy=http://10.0.0.1:9000/metrics decode-h2=http://10.0.0.2:7200/metrics

Runs on the bench client host (which reaches every service), standard library only. A service that does
not answer is reported on stderr and left out, so that one missing exporter does not lose the run.
"""
import pathlib
import sys
import urllib.error
import urllib.request


def scrape(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # nosec - URLs come from the inventory
        return resp.read().decode("utf-8", errors="replace")


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = pathlib.Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    missing = 0
    for spec in argv[1:]:
        name, _sep, url = spec.partition("=")
        try:
            text = scrape(url)
        except (OSError, urllib.error.URLError) as exc:
            print(f"{name}: {url}: {exc}", file=sys.stderr)
            missing += 1
            continue
        tmp = out / f".{name}.prom.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / f"{name}.prom")
        print(f"{name}: {len(text.splitlines())} lines")
    return 1 if missing == len(argv) - 1 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
