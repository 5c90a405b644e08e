# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""nerdctl_container's `devices`: the RDMA device nodes that replace --privileged for the engines."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.erdma.pd.plugins.module_utils import nerdctl_container as nc


def params(**overrides):
    """The role's engine without --privileged: one eRDMA verbs node, IPC_LOCK, memlock unlimited."""
    p = dict(image="localhost/erdma-pd-vllm:3f2a9c1b7d4e", entrypoint="vllm", command=["serve", "/m"],
             env={}, volumes=[], ulimits=["memlock=-1"], gpus="all", network="host", ipc="private",
             privileged=False, cap_add=["IPC_LOCK"], devices=["/dev/infiniband/uverbs1"],
             restart_policy="unless-stopped", labels={}, hostname=None, user=None, workdir=None,
             published_ports=[], shm_size="16g", extra_args=[])
    p.update(overrides)
    return p


def test_devices_become_device_flags_without_privileged():
    args = nc.run_args("nerdctl", "vllm-pd-prefill", nc.desired_config(params(
        devices=["/dev/infiniband/uverbs2", "/dev/infiniband/uverbs1"])))
    assert "--privileged" not in args
    pairs = [args[i + 1] for i, a in enumerate(args) if a == "--device"]
    assert pairs == ["/dev/infiniband/uverbs1", "/dev/infiniband/uverbs2"]
    joined = " ".join(args)
    assert "--cap-add CAP_IPC_LOCK" in joined and "--ipc private" in joined and "--shm-size 16g" in joined


def test_devices_are_part_of_the_configuration_hash():
    base = nc.config_hash(nc.desired_config(params()))
    assert nc.config_hash(nc.desired_config(params(devices=[]))) != base
    assert nc.config_hash(nc.desired_config(params(devices=["/dev/infiniband/uverbs0"]))) != base
    # Order and repetition do not matter.
    assert nc.config_hash(nc.desired_config(params(devices=["/dev/infiniband/uverbs1"] * 2))) == base


def test_podman_gpus_and_rdma_devices_together():
    args = nc.run_args("podman", "vllm-pd-decode", nc.desired_config(params()))
    devices = [args[i + 1] for i, a in enumerate(args) if a == "--device"]
    assert devices == ["nvidia.com/gpu=all", "/dev/infiniband/uverbs1"]
