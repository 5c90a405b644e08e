#!/usr/bin/env bash
# Builds the collection tarball, installs it into an empty path and renders every module's docs,
# as a user of `ansible-galaxy collection install` would.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/erdma-pd-galaxy.XXXXXX)
trap 'rm -rf "$work"' EXIT
export PATH="$root/.venv/bin:$PATH"
cd "$root"
ansible-galaxy collection build --force --output-path "$work" .
tarball=$(ls "$work"/erdma-pd-*.tar.gz)
echo "built $(basename "$tarball") ($(du -h "$tarball" | cut -f1))"
# The artefact holds the collection, not the lab: only these top-level entries (and of tests/, only
# the unit tests) may be in it.
allowed='^(MANIFEST\.json|FILES\.json|README\.md|COPYING|CHANGELOG\.md|changelogs|docs|extensions|meta|playbooks|plugins|roles|tests/unit|tests)(/|$)'
if tar -tzf "$tarball" | grep -vE "$allowed" || tar -tzf "$tarball" | grep -E '^tests/[^/]+$|^tests/[^u/][^/]*/|/__pycache__/'; then
  echo "the tarball carries what only a checkout needs (listed above): extend build_ignore in galaxy.yml" >&2
  exit 1
fi

# From a checkout, the README's install command installs (the checkout's own collections/ link must
# not count as "already installed"): this checkout's ansible.cfg, a fresh home, no collection path set.
(cd "$root" && env -u ANSIBLE_COLLECTIONS_PATH HOME="$work/home" ANSIBLE_CONFIG="$root/ansible.cfg" \
  ansible-galaxy collection install --no-deps "$tarball") | tee "$work/install.log"
grep -q "erdma.pd:$(sed -n 's/^version: *//p' "$root/galaxy.yml") was installed successfully" "$work/install.log" || {
  echo "ansible-galaxy collection install from the checkout installed nothing" >&2; exit 1; }
test -f "$work/home/.ansible/collections/ansible_collections/erdma/pd/MANIFEST.json"
# As a user elsewhere: no ansible.cfg of this checkout, only the installed tarball on the path.
cd "$work"
printf "[defaults]\n" > "$work/empty.cfg"
export ANSIBLE_COLLECTIONS_PATH="$work/installed" ANSIBLE_CONFIG="$work/empty.cfg"
# Galaxy is unreachable here: dependencies come from the collections that the ansible package ships.
ansible-galaxy collection install --no-deps -p "$work/installed" "$tarball"
for module in "$root"/plugins/modules/*.py; do
  name=$(basename "$module" .py)
  [ "$name" = "__init__" ] && continue
  ansible-doc "erdma.pd.$name" > "$work/doc.txt"
  grep -q "erdma.pd.$name" "$work/doc.txt" || { echo "ansible-doc erdma.pd.$name rendered nothing" >&2; exit 1; }
  echo "ansible-doc erdma.pd.$name: $(wc -l < "$work/doc.txt") lines"
done
for role in "$root"/roles/*/; do
  name=$(basename "$role")
  ansible-doc -t role "erdma.pd.$name" > /dev/null
  echo "ansible-doc -t role erdma.pd.$name: ok"
done

# The execution environment definition: ansible-builder accepts it, and it installs the tarball
# of this very version (ee/requirements.yml names it).
version=$(sed -n 's/^version: *//p' "$root/galaxy.yml")
grep -q "/build/erdma-pd/erdma-pd-$version.tar.gz" "$root/ee/requirements.yml" || {
  echo "ee/requirements.yml does not install erdma-pd-$version.tar.gz: update it with galaxy.yml's version" >&2; exit 1; }
ansible-builder create -f "$root/execution-environment.yml" -c "$work/ee" > /dev/null
grep -q "ansible-galaxy collection install" "$work/ee/Containerfile"
test -f "$work/ee/_build/requirements.yml" && test -x "$work/ee/_build/erdma-pd/apt-as-dnf"
# No registry host in the definition: the base image is a short name or EE_BASE_IMAGE at build time.
if grep -E '^ +name: +[^ /]+\.[^ /]+/' "$root/execution-environment.yml"; then
  echo "execution-environment.yml names a registry host: use a short name or --build-arg EE_BASE_IMAGE" >&2; exit 1
fi
echo "execution environment: ansible-builder create ok ($(grep -c '^RUN' "$work/ee/Containerfile") RUN steps)"

# The installed collection's playbooks are reachable by their FQCN.
printf 'localhost ansible_connection=local\n' > "$work/hosts"
ansible-playbook erdma.pd.site -i "$work/hosts" --syntax-check > /dev/null
echo "ansible-playbook erdma.pd.site --syntax-check: ok"

# The AWX definitions (awx.awx comes with the ansible package of the control venv).
(cd "$root" && ANSIBLE_CONFIG="$root/ansible.cfg" ansible-playbook --syntax-check extensions/awx/controller.yml > /dev/null)
echo "ansible-playbook extensions/awx/controller.yml --syntax-check: ok"

# The changelog: fragments lint clean, and CHANGELOG.md is what antsibull-changelog generates.
cd "$root"
antsibull-changelog lint
antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml
antsibull-changelog generate --output "$work/CHANGELOG.md" --output-format md
diff -u CHANGELOG.md "$work/CHANGELOG.md" || {
  echo "CHANGELOG.md is not what antsibull-changelog generates: run antsibull-changelog generate" >&2; exit 1; }
echo "changelog: fragments lint clean, CHANGELOG.md current"
