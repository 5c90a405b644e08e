"""erdma_driver took the right branch with the right arguments (testinfra, podman connection).

The kernel parts ran against STAND-IN artefacts from drv-mirror (see ../standins/): the stand-in
env_setup.sh appends one line per call to /var/log/erdma-standin/env_setup.calls with its arguments,
its working directory and whether the stale DKMS erdma.ko still existed when it started.
"""
import os
import re
import subprocess

import pytest
import testinfra

UBUNTU = {
    "drv-u2204": {"suite": "jammy/erdma", "method": "ofed_egs"},  # the guide's suite, the role's default
    "drv-u2404": {"suite": "noble/erdma", "method": "installer"},  # set by the scenario
}
RDMA_NODES = ["drv-u2204", "drv-u2404", "drv-d12"]
testinfra_hosts = [f"podman://{n}" for n in RDMA_NODES]

WORK = "/var/cache/erdma-pd/driver"
OFED = f"{WORK}/MLNX_OFED_SRC-24.10-3.2.5.0"
EGS = "mlnx-ofed-kernel_24.10.egs.1.OFED.24.10.3.2.5.1.orig.tar.gz"
STOCK = "mlnx-ofed-kernel_24.10.OFED.24.10.3.2.5.1.orig.tar.gz"
CALLS = "/var/log/erdma-standin/env_setup.calls"
STATE = "/var/lib/erdma-pd/erdma_driver.installed"
PACKAGES = ["libibverbs1", "ibverbs-providers", "ibverbs-utils", "librdmacm1", "perftest", "pkg-config"]


def node(name):
    return testinfra.get_host(f"podman://{name}")


def stale_module(host):
    return f"/lib/modules/{host.check_output('uname -r')}/updates/dkms/erdma.ko"


def calls(host):
    return host.file(CALLS).content_string.splitlines()


def playbook(name, *args):
    """Run a playbook of the scenario on its nodes; return {node: changed count} from the recap."""
    scenario = os.environ["MOLECULE_SCENARIO_DIRECTORY"]
    run = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], *args, os.path.join(scenario, name)],
        capture_output=True, text=True, timeout=900, env=dict(os.environ), check=False)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    out = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout)
    return dict(re.findall(r"^\s*(drv-\S+)\s+:\s+ok=\d+\s+changed=(\d+)", out, re.M)), out


# First, so that the tests below also prove that these runs called no installer.
def test_check_mode_changes_nothing():
    """A --check --diff run of the converge playbook on the converged nodes reports changed=0."""
    recap, out = playbook("converge.yml", "--check", "--diff", "--limit", "rdma")
    assert set(recap) == set(RDMA_NODES), out[-3000:]
    assert recap == {n: "0" for n in RDMA_NODES}, out[-6000:]


def test_unchecked_or_tampered_inputs_are_refused_and_change_nothing():
    """refusals.yml: no checksum, a wrong checksum (download and air-gapped copy), a key under another
    fingerprint and a missing apt suite each stop the role with its own message (asserted in the
    playbook), and none of them changes a node (the converge was the right-checksum, right-key case)."""
    recap, out = playbook("refusals.yml")
    assert recap == {"drv-u2204": "0", "drv-u2404": "0"}, out[-6000:]
    rescued = dict(re.findall(r"^\s*(drv-\S+)\s+:.*\brescued=(\d+)", out, re.M))
    assert rescued == {"drv-u2204": "4", "drv-u2404": "1"}, out[-3000:]  # every case refused


@pytest.mark.parametrize("name", sorted(UBUNTU))
def test_env_setup_ran_once_with_the_branch_arguments(name):
    host = node(name)
    lines = calls(host)
    # Once: neither check mode (before converge), nor the idempotence run, nor the check-mode run of
    # test_check_mode_changes_nothing may call it again.
    assert len(lines) == 1, lines
    fields = dict(field.split("=", 1) for field in lines[0].split("\t"))
    # The guide's order: the driver first, the vendor userspace (eadm) after it.
    assert fields["eadm"] == "absent"
    if UBUNTU[name]["method"] == "ofed_egs":
        assert fields["args"] == "--egs" and fields["cwd"] == OFED
        assert fields["stale_erdma_modules"] == "updates/dkms/erdma.ko,updates/dkms/erdma.ko.zst"
    else:
        # The installer gets the tarball the role fetched and checked (copied here: air-gapped mode).
        assert fields["args"] == f"--url file://{WORK}/downloads/erdma_installer-1.4.3.tar.gz"
        assert fields["cwd"] == WORK
        # Every form of the stale module was gone and depmod's index rebuilt without it.
        assert fields["stale_erdma_modules"] == "none"
        assert fields["modules_dep"] == "clean"


def test_2204_bundle_has_the_egs_tarball_in_place_of_the_stock_one():
    host = node("drv-u2204")
    assert host.file(f"{OFED}/SOURCES/{EGS}").is_file
    assert not host.file(f"{OFED}/SOURCES/{STOCK}").exists
    assert "STAND-IN" in host.file(f"{OFED}/ofed_debian.conf").content_string
    assert host.file(f"{OFED}/env_setup.sh").mode == 0o755
    # The stand-in listed the egs tarball it was given: the mirror's file arrived intact.
    assert "mlnx-ofed-kernel-24.10.egs.1/STAND-IN" in host.file(
        "/var/log/erdma-standin/egs_tarball.list").content_string


def test_2204_keeps_the_dkms_module_the_guide_does_not_remove_there():
    host = node("drv-u2204")
    assert host.file(stale_module(host)).exists
    assert host.file(stale_module(host) + ".zst").exists


def test_2404_removed_the_stale_module_and_fetched_the_installer():
    host = node("drv-u2404")
    assert not host.file(stale_module(host)).exists
    assert not host.file(stale_module(host) + ".zst").exists
    assert not host.file(OFED).exists
    assert host.file(f"{WORK}/env_setup.sh").mode == 0o755
    assert "erdma_installer/STAND-IN" in host.file("/var/log/erdma-standin/installer_tarball.list").content_string
    assert host.file(f"{WORK}/downloads/erdma_installer-1.4.3.tar.gz").is_file


@pytest.mark.parametrize("name", sorted(UBUNTU))
def test_install_is_recorded_for_this_kernel_with_checksums(name):
    host = node(name)
    record = host.file(STATE).content_string
    assert record.startswith("# Ansible managed")
    assert f"method: {UBUNTU[name]['method']}\n" in record
    assert f"kernel: {host.check_output('uname -r')}\n" in record
    assert re.search(r"^artifact: env_setup\.sh sha256:[0-9a-f]{64}$", record, re.M)
    assert "unchecked" not in record


@pytest.mark.parametrize("name", sorted(UBUNTU))
def test_vendor_repository_is_signed_and_eadm_comes_from_it(name):
    host = node(name)
    key = host.file("/etc/apt/keyrings/erdma.asc").content_string
    assert key.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    # The keyring holds exactly the mirror's key, the one the scenario pinned.
    standin = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "standin-mirror")
    with open(os.path.join(standin, "erdma", "GPGKEY")) as served:
        assert key == served.read()
    source = host.file("/etc/apt/sources.list.d/erdma.list").content_string
    assert "Ansible managed" in source
    assert (f"deb [signed-by=/etc/apt/keyrings/erdma.asc] https://drv-mirror:8443/erdma/apt/ubuntu "
            f"{UBUNTU[name]['suite']} main") in source.splitlines()
    assert host.package("eadm").is_installed
    assert "STAND-IN" in host.check_output("eadm")
    # apt fetched it over HTTPS, verifying the mirror's certificate against the CA the node trusts.
    assert "https://drv-mirror:8443/erdma/apt/ubuntu" in host.check_output("apt-cache policy eadm")


@pytest.mark.parametrize("name", RDMA_NODES)
def test_userspace_packages_installed_and_tools_run(name):
    host = node(name)
    for package in PACKAGES:
        # Ubuntu 24.04 renamed librdmacm1 to librdmacm1t64 (64-bit time_t); apt resolves the old name to it.
        assert host.package(package).is_installed or host.package(package + "t64").is_installed, package
    # A container has no kernel RDMA core: the tool runs and says it cannot list devices.
    result = host.run("ibv_devinfo")
    assert "Failed to get IB devices list" in result.stdout + result.stderr


@pytest.mark.parametrize("name", RDMA_NODES)
def test_compat_mode_is_persistent_once(name):
    conf = node(name).file("/etc/modprobe.d/erdma.conf")
    assert conf.mode == 0o644
    text = conf.content_string
    assert text.startswith("# Ansible managed")
    assert text.count("options erdma compat_mode=Y") == 1


def test_debian_userspace_only_left_the_kernel_and_vendor_repository_alone():
    host = node("drv-d12")
    for path in (STATE, WORK, CALLS, "/etc/apt/sources.list.d/erdma.list", "/etc/apt/keyrings/erdma.asc"):
        assert not host.file(path).exists, path
    assert not host.package("eadm").is_installed
