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
    "drv-u2204": {"codename": "jammy", "method": "ofed_egs"},
    "drv-u2404": {"codename": "noble", "method": "installer"},
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


# First, so that the tests below also prove this check-mode run called no installer.
def test_check_mode_changes_nothing():
    """A --check --diff run of the converge playbook on the converged nodes reports changed=0."""
    scenario = os.environ["MOLECULE_SCENARIO_DIRECTORY"]
    run = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "--check", "--diff", "--limit", "rdma",
         os.path.join(scenario, "converge.yml")],
        capture_output=True, text=True, timeout=900, env=dict(os.environ), check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    out = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout)
    recap = dict(re.findall(r"^\s*(drv-\S+)\s+:\s+ok=\d+\s+changed=(\d+)", out, re.M))
    assert set(recap) == set(RDMA_NODES), out[-3000:]
    assert recap == {n: "0" for n in RDMA_NODES}, out[-6000:]


@pytest.mark.parametrize("name", sorted(UBUNTU))
def test_env_setup_ran_once_with_the_branch_arguments(name):
    host = node(name)
    lines = calls(host)
    # Once: neither check mode (before converge), nor the idempotence run, nor the check-mode run of
    # test_check_mode_changes_nothing may call it again.
    assert len(lines) == 1, lines
    fields = dict(field.split("=", 1) for field in lines[0].split("\t"))
    if UBUNTU[name]["method"] == "ofed_egs":
        assert fields == {"args": "--egs", "cwd": OFED, "stale_erdma_ko": "present"}
    else:
        # Air-gapped mode (erdma_driver_artifacts_dir): the tarball was copied, not downloaded by the host.
        assert fields == {"args": f"--url file://{WORK}/downloads/erdma_installer-1.4.3.tar.gz",
                          "cwd": WORK, "stale_erdma_ko": "absent"}


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


def test_2404_removed_the_stale_module_and_fetched_the_installer():
    host = node("drv-u2404")
    assert not host.file(stale_module(host)).exists
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
    assert host.file("/etc/apt/keyrings/erdma.asc").content_string.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    source = host.file("/etc/apt/sources.list.d/erdma.list").content_string
    assert "Ansible managed" in source
    assert (f"deb [signed-by=/etc/apt/keyrings/erdma.asc] http://drv-mirror:8080/erdma/apt/ubuntu "
            f"{UBUNTU[name]['codename']}/erdma main") in source.splitlines()
    assert host.package("eadm").is_installed
    assert "STAND-IN" in host.check_output("eadm")
    assert "drv-mirror:8080/erdma/apt/ubuntu" in host.check_output("apt-cache policy eadm")


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
