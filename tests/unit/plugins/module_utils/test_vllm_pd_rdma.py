# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the vllm_pd role decides about RDMA, images and keys, on real recorded outputs.

- device checks on ibv_devinfo outputs (tests/unit/fixtures/ibv_devinfo, SOURCES.md there);
- Mooncake's silent TCP fallback and its RDMA setup failures on real client logs
  (tests/unit/fixtures/mooncake: 0.3.7, the guide's pin, and 0.3.13.post1);
- key fingerprints on real `gpg --show-keys --with-colons` outputs (tests/unit/fixtures/gpg).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.erdma.pd.plugins.module_utils import rdma_devinfo, vllm_pd

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures")


def fixture(*parts):
    with open(os.path.join(FIXTURES, *parts)) as handle:
        return handle.read()


def devices(name):
    parsed, _warnings = rdma_devinfo.parse_devinfo(fixture("ibv_devinfo", name))
    return parsed


# ---------------------------------------------------------------- device list
@pytest.mark.parametrize("given, empty", [
    (["erdma_0"], []),
    (["erdma_0", ""], [2]),
    (["erdma_0", "  "], [2]),
    (["", "erdma_1"], [1]),
    ("erdma_0,,erdma_1", [2]),
    ("erdma_0,", [2]),
    ([None, "erdma_0"], [1]),
    ([], []),
    ("", []),
])
def test_empty_device_entries(given, empty):
    assert vllm_pd.empty_device_entries(given) == empty


def test_guide_device_is_accepted():
    assert vllm_pd.rdma_device_problems(["erdma_0"], devices("erdma_guide.txt")) == []
    assert vllm_pd.rdma_device_problems("erdma_0", devices("erdma_guide_verbose.txt")) == []


def test_missing_device_is_named_with_what_exists():
    problems = vllm_pd.rdma_device_problems(["erdma_0", "erdma_1"], devices("erdma_guide.txt"), where="gpu-h20-01")
    assert problems == ["gpu-h20-01 has no RDMA device erdma_1 (ibv_devinfo lists: erdma_0)"]


def test_device_without_active_port_is_refused():
    # mlx4_1 and mlx4_0 each have one PORT_ACTIVE and one PORT_DOWN port: one active port is enough.
    mlx4 = devices("mlx4_two_hcas.txt")
    assert vllm_pd.rdma_device_problems(["mlx4_0", "mlx4_1"], mlx4) == []
    for port in mlx4[0]["ports"]:
        port["state"] = "PORT_DOWN"
    problems = vllm_pd.rdma_device_problems(["mlx4_0", "mlx4_1"], mlx4)
    assert problems == ["this host: %s has no PORT_ACTIVE port (port 1 PORT_DOWN, port 2 PORT_DOWN)"
                        % mlx4[0]["hca_id"]]


def test_host_without_rdma_has_no_devices():
    # ibv_devinfo in a container of this machine: the kernel has no RDMA core (rc 255).
    text = fixture("ibv_devinfo", "no_rdma_kernel_debian12.txt")
    assert rdma_devinfo.parse_devinfo(text) == ([], [])
    problems = vllm_pd.rdma_device_problems(["erdma_0"], [], where="the container vllm-pd-prefill")
    assert problems == ["the container vllm-pd-prefill has no RDMA device erdma_0 (ibv_devinfo lists: none)"]


def test_empty_entry_is_a_problem_even_when_the_rest_is_fine():
    problems = vllm_pd.rdma_device_problems(["erdma_0", ""], devices("erdma_guide.txt"))
    assert problems == ["entry 2 of vllm_pd_rdma_devices is empty: remove it (Mooncake skips empty names)"]


def test_device_summary_for_the_report():
    summary = vllm_pd.device_summary(devices("erdma_guide.txt"))
    assert summary == [{"hca_id": "erdma_0", "transport": "eRDMA", "is_erdma": True, "active": True,
                        "ports": [{"port": 1, "state": "PORT_ACTIVE", "link_layer": "Ethernet"}]}]


# ---------------------------------------------------------------- verbs device nodes
# `grep -H . /sys/class/infiniband_verbs/uverbs*/ibdev` prints FILE:CONTENT, one line per node.
IBDEV = ("/sys/class/infiniband_verbs/uverbs0/ibdev:mlx5_0\n"
         "/sys/class/infiniband_verbs/uverbs1/ibdev:erdma_0\n"
         "/sys/class/infiniband_verbs/uverbs2/ibdev:erdma_1\n")


def test_uverbs_nodes_of_the_listed_devices_only():
    assert vllm_pd.uverbs_devices(IBDEV, ["erdma_1", "erdma_0"]) == [
        "/dev/infiniband/uverbs2", "/dev/infiniband/uverbs1"]
    assert vllm_pd.uverbs_devices(IBDEV, "erdma_0") == ["/dev/infiniband/uverbs1"]
    assert vllm_pd.uverbs_devices("", []) == []


def test_device_without_verbs_node_fails_with_the_fix():
    with pytest.raises(vllm_pd.SettingsError, match="erdma_3 has no /dev/infiniband/uverbs.*modprobe ib_uverbs"):
        vllm_pd.uverbs_devices(IBDEV, ["erdma_3"])
    # What grep prints when no node exists at all (the glob stays literal).
    with pytest.raises(vllm_pd.SettingsError, match="seen: none"):
        vllm_pd.uverbs_devices("grep: /sys/class/infiniband_verbs/uverbs*/ibdev: No such file or directory\n",
                               ["erdma_0"])


# ---------------------------------------------------------------- image pinning
DIGEST = "sha256:" + "0123456789abcdef" * 4


def test_pinned_image():
    assert vllm_pd.pinned_image("example.org/vllm-openai:v0.10.1.1", DIGEST) == \
        "example.org/vllm-openai:v0.10.1.1@" + DIGEST
    assert vllm_pd.pinned_image("example.org/vllm-openai:v0.10.1.1", "") == "example.org/vllm-openai:v0.10.1.1"
    assert vllm_pd.pinned_image("example.org/x@" + DIGEST, DIGEST) == "example.org/x@" + DIGEST


@pytest.mark.parametrize("digest", ["sha256:abc", "0123456789abcdef" * 4, "sha256:" + "G" * 64,
                                    "sha512:" + "0" * 64])
def test_malformed_digest_is_refused(digest):
    with pytest.raises(vllm_pd.SettingsError, match="is not sha256"):
        vllm_pd.pinned_image("example.org/x:1", digest)


def test_conflicting_digest_is_refused():
    with pytest.raises(vllm_pd.SettingsError, match="another digest"):
        vllm_pd.pinned_image("example.org/x@sha256:" + "f" * 64, DIGEST)


# ---------------------------------------------------------------- apt key fingerprints
def test_fingerprint_of_a_single_key():
    assert vllm_pd.gpg_fingerprints(fixture("gpg", "debian_bookworm_stable_keyring.txt")) == [
        "4D64FEC119C2029067D6E791F8D2585B8783D481"]


def test_fingerprints_of_a_keyring_in_order():
    assert vllm_pd.gpg_fingerprints(fixture("gpg", "ubuntu_archive_keyring.txt")) == [
        "790BC7277767219C42C86F933B4FE6ACC0B21F32",
        "843938DF228D22F7B3742BC0D94AA3F0EFE21092",
        "F6ECB3762474EDA9D21B7022871920D1991BC93C"]


def test_subkey_fingerprints_are_left_out():
    assert vllm_pd.gpg_fingerprints(fixture("gpg", "throwaway_key_with_subkey.txt")) == [
        "13EB0BDD152FB683D5D11C236E62400ED66B2974"]


def test_not_a_key_has_no_fingerprint():
    assert vllm_pd.gpg_fingerprints("") == []


@pytest.mark.parametrize("written", ["4D64 FEC1 19C2 0290 67D6  E791 F8D2 585B 8783 D481",
                                     "0x4d64fec119c2029067d6e791f8d2585b8783d481",
                                     "4d64fec119c2029067d6e791f8d2585b8783d481"])
def test_fingerprint_spellings_compare_equal(written):
    assert vllm_pd.normalize_fingerprint(written) == "4D64FEC119C2029067D6E791F8D2585B8783D481"


# ---------------------------------------------------------------- Mooncake's transport
@pytest.mark.parametrize("version", ["0.3.7", "0.3.13.post1"])
def test_silent_tcp_fallback_fails_with_the_reason(version):
    # protocol rdma, device_name "": setup returns 0, put/get work, over TCP.
    report = vllm_pd.mooncake_transport_report(fixture("mooncake", "client-%s-rdma-empty-device.log" % version), "rdma")
    assert report["fallback"] is True and report["transport"] == "tcp"
    assert report["reason"].startswith("Mooncake found no RDMA device and runs over TCP")
    assert "No RDMA devices found, check your device installation" in report["reason"]


@pytest.mark.parametrize("version", ["0.3.7", "0.3.13.post1"])
def test_rdma_setup_failure_fails_with_the_log_lines(version):
    # protocol rdma, device erdma_0 that does not exist: setup fails (-600 / -1).
    report = vllm_pd.mooncake_transport_report(fixture("mooncake", "client-%s-rdma-no-device.log" % version), "rdma")
    assert report["fallback"] is False
    assert report["reason"].startswith("Mooncake could not set up RDMA")
    assert any("RdmaTransport: No available RNIC" in line for line in report["errors"])
    assert any("Failed to install RDMA transport with specified devices" in line for line in report["errors"])


def test_tcp_asked_for_is_not_a_problem():
    report = vllm_pd.mooncake_transport_report(fixture("mooncake", "client-0.3.7-tcp-ok.log"), "tcp")
    assert report == {"transport": "tcp", "fallback": False, "errors": [], "reason": None}
    # The same fallback log is fine when tcp was asked for.
    report = vllm_pd.mooncake_transport_report(fixture("mooncake", "client-0.3.7-rdma-empty-device.log"), "tcp")
    assert report["reason"] is None and report["fallback"] is False


def test_log_without_mooncake_lines_says_nothing():
    report = vllm_pd.mooncake_transport_report("INFO:     Uvicorn running on http://192.0.2.10:7100\n", "rdma")
    assert report == {"transport": None, "fallback": False, "errors": [], "reason": None}


def test_rdma_log_lines_are_rdma():
    # The lines a working RDMA setup prints in the same code paths (client.cpp / rdma_transport.cpp).
    text = ("I1127 20:45:42.952917  2370 client.cpp:271] Transfer engine auto discovery is disabled for protocol: rdma\n"
            "I1127 20:45:42.953166  2370 client.cpp:285] Using specified RDMA devices: erdma_0\n"
            "I1127 20:45:42.954005  2370 client.cpp:295] Topology discovery complete with specified devices. "
            "Found 1 HCAs\n")
    report = vllm_pd.mooncake_transport_report(text, "rdma")
    assert report == {"transport": "rdma", "fallback": False, "errors": [], "reason": None}
