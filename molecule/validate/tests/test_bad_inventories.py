"""Bad inventories are refused before any change: the real site.yml against three bare podman nodes.

Each case of bad_inventories.py runs site.yml for real (no --check): each run must fail in the
validation play, report changed=0 everywhere and say which host, which variable and what fixes it.
The nodes are compared with a snapshot taken before the first run (files where the stages write,
running services, listening ports): a refused run leaves every host exactly as it was. A last test
proves that the snapshot does see a change.
"""
import concurrent.futures
import subprocess

import pytest

from bad_inventories import CASES, NODES, assert_refused, run, write_inventory

# Where the stages write; systemd's own state (timers, random seed) moves on by itself.
WATCHED = "/etc /opt /usr/local /var/cache /var/lib /data /srv"
SNAPSHOT = (f"find {WATCHED} -xdev -path /var/lib/systemd -prune -o -printf '%p %s %m %U %T@ %l\\n' "
            "2>/dev/null | sort | sha256sum; "
            # A stage that started a service or opened a port without writing a file would show here.
            "systemctl list-units --type=service --state=running --no-legend --plain | sort; "
            "ss -Hltnu | sort")
CONNECTION = {"ansible_connection": "containers.podman.podman", "ansible_python_interpreter": "/usr/bin/python3"}
# Runs at once: the control node does most of the work; more than 3 only queue on 2 cores.
PARALLEL_RUNS = 3


def podman(*args):
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=True, timeout=60).stdout.strip()


def snapshot():
    return dict((node, podman("exec", node, "sh", "-c", SNAPSHOT)) for node in NODES)


@pytest.fixture(scope="module")
def lab_ips():
    return dict((node, podman("inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                              node)) for node in NODES)


@pytest.fixture(scope="module")
def pristine():
    """The nodes before any run of this module; the last tests compare with it."""
    return snapshot()


@pytest.fixture(scope="module")
def refusals(tmp_path_factory, lab_ips, pristine):
    """site.yml with every bad inventory, and the first one again in --check (a dry run is refused too)."""
    assert pristine
    runs = [(case, bad_all, bad_hosts) for case, bad_all, bad_hosts, _words in CASES]
    runs.append(("--check " + CASES[0][0], CASES[0][1], CASES[0][2]))
    with concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL_RUNS) as pool:
        futures = {}
        for case, bad_all, bad_hosts in runs:
            path = write_inventory(tmp_path_factory.mktemp("inv"), lab_ips, CONNECTION, bad_all, bad_hosts)
            extra = ["--check"] if case.startswith("--check") else []
            futures[case] = pool.submit(run, "site.yml", path, *extra)
        return dict((case, future.result()) for case, future in futures.items())


def test_the_sound_inventory_passes_the_validation(tmp_path, lab_ips, pristine):
    assert pristine
    rc, output = run("playbooks/validate.yml", write_inventory(tmp_path, lab_ips, CONNECTION))
    assert rc == 0, output[-4000:]
    assert "every input is valid and the hosts agree" in output


@pytest.mark.parametrize("case, words", [(c[0], c[3]) for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_inventory_is_refused_before_any_change(refusals, case, words):
    rc, output = refusals[case]
    assert_refused(case, words, rc, output)


def test_a_dry_run_is_refused_the_same_way(refusals):
    case, _bad_all, _bad_hosts, words = CASES[0]
    rc, output = refusals["--check " + case]
    assert_refused(case, words, rc, output)


def test_no_refused_run_changed_a_node(refusals, pristine):
    assert len(refusals) == len(CASES) + 1
    assert snapshot() == pristine


def test_the_snapshot_sees_a_change(pristine):
    """The comparison above could not pass by seeing nothing: one file's mode changed shows (and is put back:
    chmod leaves the times the snapshot reads alone)."""
    mode = podman("exec", "val-master", "stat", "-c", "%a", "/etc/debian_version")
    podman("exec", "val-master", "chmod", "600", "/etc/debian_version")
    try:
        assert snapshot()["val-master"] != pristine["val-master"]
    finally:
        podman("exec", "val-master", "chmod", mode, "/etc/debian_version")
    assert snapshot() == pristine
