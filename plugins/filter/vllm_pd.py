# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the vllm_pd role; the logic lives in module_utils/vllm_pd.py (unit-tested there)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.erdma.pd.plugins.module_utils import rdma_devinfo, vllm_pd


def _wrap(func):
    def run(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except vllm_pd.SettingsError as exc:
            raise AnsibleFilterError(str(exc))
    run.__name__ = func.__name__
    run.__doc__ = func.__doc__
    return run


def connector_config(settings):
    return vllm_pd.connector_config(dict(settings))


def engine_args(settings):
    return vllm_pd.engine_args(dict(settings))


def consistency(hosts, require_both_stages=True):
    return vllm_pd.consistency_problems(dict((k, dict(v)) for k, v in dict(hosts).items()),
                                        require_both_stages=bool(require_both_stages))


def missing_pins(pins, installed):
    return vllm_pd.missing_pins(list(pins or []), dict(installed or {}))


def rdma_device_problems(wanted, devices, where="this host"):
    return vllm_pd.rdma_device_problems(wanted, list(devices or []), where=str(where))


def empty_device_entries(devices):
    return vllm_pd.empty_device_entries(devices)


def devinfo(text):
    """ibv_devinfo text -> the device summary (name, transport, ports and states); [] without devices."""
    devices, _warnings = rdma_devinfo.parse_devinfo(str(text or ""))
    return vllm_pd.device_summary(devices)


def uverbs_devices(ibdev_lines, wanted):
    return vllm_pd.uverbs_devices(str(ibdev_lines or ""), wanted)


def pinned_image(image, digest):
    return vllm_pd.pinned_image(image, digest)


def gpg_fingerprints(colons_text):
    return vllm_pd.gpg_fingerprints(str(colons_text or ""))


def fingerprint(text):
    return vllm_pd.normalize_fingerprint(text)


def mooncake_transport(log_text, protocol):
    return vllm_pd.mooncake_transport_report(str(log_text or ""), str(protocol))


class FilterModule(object):
    """vllm_pd filters."""

    def filters(self):
        return {
            "vllm_pd_connector_config": _wrap(connector_config),
            "vllm_pd_engine_args": _wrap(engine_args),
            "vllm_pd_consistency": _wrap(consistency),
            "vllm_pd_missing_pins": _wrap(missing_pins),
            "missing_pins": _wrap(missing_pins),
            "vllm_pd_rdma_device_problems": _wrap(rdma_device_problems),
            "vllm_pd_devinfo": _wrap(devinfo),
            "vllm_pd_empty_device_entries": _wrap(empty_device_entries),
            "vllm_pd_uverbs_devices": _wrap(uverbs_devices),
            "vllm_pd_pinned_image": _wrap(pinned_image),
            "vllm_pd_gpg_fingerprints": _wrap(gpg_fingerprints),
            "vllm_pd_fingerprint": _wrap(fingerprint),
            "vllm_pd_mooncake_transport": _wrap(mooncake_transport),
        }
