# Run as `bash env_setup.sh ARGS`, as the field guide does (hence no shebang).
# STAND-IN for the vendor's env_setup.sh (<mirror>/env_setup.sh), served only by the molecule scenario
# erdma_driver from its stand-in mirror. No kernel module can be built or loaded in a container, so this
# script installs nothing: it records how it was called and checks what the real script relies on (the
# egs tarball in SOURCES and ofed_debian.conf for --egs; a downloadable installer tarball for --url), so
# that the scenario's testinfra tests can prove the role took the right branch with the right arguments.
set -euo pipefail
log_dir=/var/log/erdma-standin
mkdir -p "$log_dir"
# What the real installer would meet: any erdma module of the running kernel left in updates/ (in any
# compression), whether depmod's index still names one, and whether the vendor userspace (eadm) is
# already installed (the guide installs it after the driver).
modules=/lib/modules/$(uname -r)
stale=$(cd "$modules" 2>/dev/null && find updates -name 'erdma.ko*' 2>/dev/null | sort | paste -sd, -)
if [ -f "$modules/modules.dep" ]; then
  if grep -q 'erdma\.ko' "$modules/modules.dep"; then index=names-erdma; else index=clean; fi
else
  index=missing
fi
eadm=absent
if dpkg-query --show --showformat='${Status}' eadm 2>/dev/null | grep -q 'ok installed'; then eadm=installed; fi
printf 'args=%s\tcwd=%s\tstale_erdma_modules=%s\tmodules_dep=%s\teadm=%s\n' \
  "$*" "$PWD" "${stale:-none}" "$index" "$eadm" >> "$log_dir/env_setup.calls"

fail() { echo "stand-in env_setup.sh: $*" >&2; exit 3; }
case "${1:-}" in
  --egs)
    egs=SOURCES/mlnx-ofed-kernel_24.10.egs.1.OFED.24.10.3.2.5.1.orig.tar.gz
    stock=SOURCES/mlnx-ofed-kernel_24.10.OFED.24.10.3.2.5.1.orig.tar.gz
    [ -f "$egs" ] || fail "$egs is missing"
    [ ! -e "$stock" ] || fail "$stock should have been removed"
    [ -f ofed_debian.conf ] || fail "ofed_debian.conf is missing from $PWD"
    tar -tzf "$egs" > "$log_dir/egs_tarball.list"
    ;;
  --url)
    url=${2:-}
    [ -n "$url" ] || fail "--url needs a URL"
    python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' \
      "$url" "$log_dir/erdma_installer.tar.gz" || fail "cannot download $url"
    tar -tzf "$log_dir/erdma_installer.tar.gz" > "$log_dir/installer_tarball.list"
    ;;
  *)
    fail "unknown arguments: $*"
    ;;
esac
echo "stand-in env_setup.sh $*: checks passed, nothing installed"
