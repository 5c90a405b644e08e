#!/usr/bin/env bash
# Runs ansible-test (sanity, units) from a temporary ansible_collections/erdma/pd tree,
# which is where ansible-test insists a collection lives. Usage: ansible_test.sh sanity [units]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/erdma-pd-ansible-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
tree="$work/ansible_collections/erdma/pd"
mkdir -p "$tree"
# Tracked files plus new files not yet committed; ignored artefacts (venv, lab builds) stay out.
(cd "$root" && git ls-files -co --exclude-standard -z | grep -zv '^collections/' \
  | xargs -0 -I{} cp --parents -P {} "$tree/")
# ansible-test wants a git repo to decide which files belong to the collection.
(cd "$tree" && git init -q && git add -A >/dev/null)
# ansible-test's own --venv mode downloads a pip bootstrap script from a host that is not reachable
# here; a venv of our own (same ansible-core as requirements.txt, cached beside the main venv) with
# --local --requirements gets the same sanity tools from the package registry instead.
core=$(grep -E '^ansible-core==' "$root/requirements.txt" || "$root/.venv/bin/pip" freeze | grep -E '^ansible-core==')
venv="$root/.venv-ansible-test"
if [ "$(cat "$venv/.core" 2>/dev/null)" != "$core" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "$core"
  echo "$core" > "$venv/.core"
fi
# Offer ansible-test our stand-in for the pip bootstrap script it cannot download here.
pip_ver=$(grep -ohE "pip='[0-9.]+'" "$venv"/lib/python3*/site-packages/ansible_test/_internal/python_requirements.py | head -1 | tr -dc '0-9.')
for ver in $pip_ver; do
  cache="$HOME/.ansible/test/cache/get_pip_${ver//./_}.py"
  mkdir -p "$(dirname "$cache")"
  cmp -s "$root/tests/ansible_test/get_pip_standin.py" "$cache" || cp "$root/tests/ansible_test/get_pip_standin.py" "$cache"
done
export PATH="$venv/bin:$PATH"
cd "$tree"
for what in "${@:-sanity}"; do
  case "$what" in
    sanity) ansible-test sanity --local --python 3.11 --requirements --color no ;;
    units) if [ -d tests/unit ]; then ansible-test units --local --python 3.11 --requirements --color no; fi ;;
    *) echo "unknown: $what" >&2; exit 2 ;;
  esac
done
