"""Bad inventories are refused by site.yml's validation play: local-connection hosts, in check mode.

The three lab roles (master + proxy, prefill, decode) are all this machine, reached with the local
connection; the runs use --check so that no run could change this machine even if a check were
missing. molecule/validate runs the same cases for real against three podman nodes and compares
the nodes before and after. Cases and assertions: tests/integration/bad_inventories.py.
"""
import concurrent.futures
import socket

import pytest

from bad_inventories import CASES, assert_refused, run, write_inventory


def this_machine_address():
    """The address this machine uses towards the outside (no packet is sent)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))
        return probe.getsockname()[0]
    finally:
        probe.close()


def inventory(path, bad_all=None, bad_hosts=None):
    # The master binds to this machine's address; the engines to loopback, each with its own
    # (announced) engine address, as two hosts would have.
    lab_ips = {"val-master": this_machine_address(), "val-prefill": "127.0.0.1", "val-decode": "127.0.0.1"}
    return write_inventory(path, lab_ips, {"ansible_connection": "local",
                                           "ansible_python_interpreter": "{{ ansible_playbook_python }}"},
                           bad_all, bad_hosts,
                           host_vars={"val-prefill": {"vllm_pd_host_address": "10.89.60.11"},
                                      "val-decode": {"vllm_pd_host_address": "10.89.60.12"}})


@pytest.fixture(scope="module")
def refusals(tmp_path_factory):
    """site.yml --check with every bad inventory, three at a time."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        futures = {}
        for case, bad_all, bad_hosts, _words in CASES:
            path = inventory(tmp_path_factory.mktemp("inv"), bad_all, bad_hosts)
            futures[case] = pool.submit(run, "site.yml", path, "--check")
        return dict((case, future.result()) for case, future in futures.items())


def test_the_sound_inventory_has_no_input_problem(tmp_path):
    """Without a bad value nothing is refused but, on a machine without systemd, the machine itself."""
    rc, output = run("playbooks/validate.yml", inventory(tmp_path), "--check")
    if rc != 0:
        assert output.count("Fix:") == output.count("the service manager is") > 0, output[-4000:]


@pytest.mark.parametrize("case, words", [(c[0], c[3]) for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_inventory_is_refused_before_any_change(refusals, case, words):
    rc, output = refusals[case]
    assert_refused(case, words, rc, output)
