#!/usr/bin/env bash
# A small venv holding LMCache 0.3.9's configuration loader without its CUDA parts, for
# tests/integration/test_lmcache_config.py: CPU torch and pyyaml, then `lmcache --no-deps`.
# Cached: rebuilt only when the wanted set below changes. Prints the venv's path on its last line.
#   LMCACHE_VENV   where the venv lives (default: .cache/lmcache-venv in the checkout)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${LMCACHE_VENV:-$root/.cache/lmcache-venv}
want="lmcache==0.3.9 torch==2.13.0 pyyaml==6.0.3"
stamp="$venv/.erdma-pd-lmcache"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv"
  exit 0
fi
echo "building $venv ($want)" >&2
rm -rf "$venv"
python3 -m venv "$venv"
# torch's CPU build: from a local wheel directory when there is one, else PyTorch's CPU index.
if [ -d "${PIP_FIND_LINKS:-/opt/wheels}" ]; then
  extra=(--find-links "${PIP_FIND_LINKS:-/opt/wheels}")
else
  extra=(--extra-index-url https://download.pytorch.org/whl/cpu)
fi
"$venv/bin/pip" install -q "${extra[@]}" "torch==2.13.0" "pyyaml==6.0.3" >&2
"$venv/bin/pip" install -q --no-deps "lmcache==0.3.9" >&2
echo "$want" > "$stamp"
echo "$venv"
