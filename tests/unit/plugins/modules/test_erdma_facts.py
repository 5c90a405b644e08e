# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""erdma.pd.erdma_facts end to end on a directory tree laid out like a host, with an `eadm` stand-in
on PATH that answers `ver` and `stat` the way the public exporter quotes them."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat
import time

import pytest


from ansible.module_utils import basic
from ansible_collections.erdma.pd.plugins.modules import erdma_facts

# coreutils (timeout bounds every tool the modules run); none of the RDMA tools is installed there.
SYSTEM_PATH = "/usr/bin:/bin"
FIXTURES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "eadm"))


@pytest.fixture
def run(run_module):
    def run_it(args, check_mode=False):
        return run_module(erdma_facts, args, check_mode)

    return run_it


def write(root, path, text=""):
    full = os.path.join(str(root), path.lstrip("/"))
    if not os.path.isdir(os.path.dirname(full)):
        os.makedirs(os.path.dirname(full))
    with open(full, "w") as handle:
        handle.write(text)


def eadm_stand_in(bin_dir):
    path = os.path.join(str(bin_dir), "eadm")
    with open(path, "w") as handle:
        handle.write(
            '#!/bin/sh\necho "$@" >> "%s.argv"\n'
            'case "$1" in\n  ver) /bin/cat "%s/ver_exporter_quote.txt" ;;\n'
            '  stat) /bin/cat "%s/stat_reconstructed.txt" ;;\n  *) exit 2 ;;\nesac\n' % (path, FIXTURES, FIXTURES)
        )
    os.chmod(path, stat.S_IRWXU)
    # modinfo answers first when installed; this one knows no erdma module on disk, so the version
    # must come from eadm.
    modinfo = os.path.join(str(bin_dir), "modinfo")
    with open(modinfo, "w") as handle:
        handle.write("#!/bin/sh\necho \"modinfo: ERROR: Module erdma not found.\" >&2\nexit 1\n")
    os.chmod(modinfo, stat.S_IRWXU)
    return path


@pytest.fixture
def host(tmp_path):
    root = tmp_path / "root"
    write(root, "/proc/modules", "erdma 155648 0 - Live 0x0\n")
    write(root, "/sys/module/erdma/parameters/compat_mode", "N\n")
    write(root, "/etc/modprobe.d/erdma.conf", "options erdma compat_mode=Y\n")
    write(root, "/dev/infiniband/uverbs0")
    return root


def test_driver_loaded_in_standard_mode_with_compat_mode_persisted(host, tmp_path, monkeypatch, run):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    eadm = eadm_stand_in(bin_dir)
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, SYSTEM_PATH))
    outcome = run({"root": str(host), "device": "erdma_0"})
    assert not outcome.failed
    facts = outcome.result["ansible_facts"]["erdma"]
    assert facts["loaded"] is True
    # Live N, persisted Y: what a host looks like before the driver is reloaded.
    assert (facts["compat_mode"], facts["compat_mode_persistent"]) == (False, True)
    assert (facts["version"], facts["version_source"]) == ("0.2.38", "eadm ver")
    assert facts["rdma_cm_present"] is False and facts["uverbs_devices"] == ["uverbs0"]
    assert facts["stats"]["connect_total_cnt"] == 34
    with open(eadm + ".argv") as handle:
        assert handle.read().splitlines() == ["ver", "stat -d erdma_0 -l"]


def test_eadm_without_the_l_option_is_asked_again_without_it(host, tmp_path, monkeypatch, run):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    path = str(bin_dir / "eadm")
    with open(path, "w") as handle:
        handle.write('#!/bin/sh\necho "$@" >> "%s.argv"\n'
                     'case "$*" in\n  *-l*) echo "unknown option -l" >&2; exit 1 ;;\n'
                     '  stat*) /bin/cat "%s/stat_exporter_quote.txt" ;;\n  *) exit 1 ;;\nesac\n' % (path, FIXTURES))
    os.chmod(path, stat.S_IRWXU)
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, SYSTEM_PATH))
    outcome = run({"root": str(host)})
    assert outcome.result["ansible_facts"]["erdma"]["stats"] == {"listen_create_cnt": 0}
    with open(path + ".argv") as handle:
        assert handle.read().splitlines()[-2:] == ["stat -d erdma_0 -l", "stat -d erdma_0"]


def test_without_eadm_counters_are_empty_not_a_failure(host, tmp_path, monkeypatch, run):
    monkeypatch.setenv("PATH", "%s:%s" % (tmp_path, SYSTEM_PATH))
    outcome = run({"root": str(host)})
    assert not outcome.failed
    facts = outcome.result["ansible_facts"]["erdma"]
    assert facts["eadm_present"] is False and facts["stats"] == {}
    assert facts["version"] is None


def test_parse_only_reads_nothing_from_the_host(run):
    with open(os.path.join(FIXTURES, "stat_exporter_quote.txt")) as handle:
        outcome = run({"output": handle.read(), "root": "/nonexistent"})
    assert outcome.result["ansible_facts"]["erdma"] == {"stats_device": "erdma_0", "stats": {"listen_create_cnt": 0}}


def test_a_hanging_eadm_is_stopped_and_its_counters_left_out(host, tmp_path, monkeypatch, run):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    path = str(bin_dir / "eadm")
    with open(path, "w") as handle:
        handle.write("#!/bin/sh\nexec /bin/sleep 60\n")
    os.chmod(path, stat.S_IRWXU)
    monkeypatch.setenv("PATH", "%s:%s" % (bin_dir, SYSTEM_PATH))
    warnings = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, text: warnings.append(text))
    started = time.monotonic()
    outcome = run({"root": str(host), "timeout": 1})
    # ver, stat -l, stat: three calls of 1 s each, not three of 60 s.
    assert time.monotonic() - started < 15
    assert not outcome.failed
    assert outcome.result["ansible_facts"]["erdma"]["stats"] == {}
    assert any("did not finish within 1 s" in text for text in warnings)


def test_timeout_zero_is_refused(host, run):
    outcome = run({"root": str(host), "timeout": 0})
    assert outcome.failed and "timeout must be at least 1 second" in outcome.result["msg"]
