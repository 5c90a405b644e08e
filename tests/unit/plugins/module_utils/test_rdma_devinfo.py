# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ibv_devinfo parser against real recorded outputs (tests/unit/fixtures/ibv_devinfo/SOURCES.md)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.erdma.pd.plugins.module_utils.rdma_devinfo import (
    devinfo_command,
    link_gbps,
    parse_devinfo,
)

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "ibv_devinfo")


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as handle:
        return handle.read()


def parse(name):
    devices, warnings = parse_devinfo(fixture(name))
    return devices, warnings


def by_id(devices):
    return dict((device["hca_id"], device) for device in devices)


def test_erdma_guide_plain_output_has_typed_identity_and_active_port():
    devices, warnings = parse("erdma_guide.txt")
    assert warnings == []
    assert len(devices) == 1
    erdma = devices[0]
    assert erdma["hca_id"] == "erdma_0"
    assert erdma["transport"] == "eRDMA"
    assert erdma["transport_code"] == 1
    assert erdma["fw_ver"] == "0.2.0"
    assert erdma["node_guid"] == "0216:3eff:fe52:33a9"
    assert erdma["vendor_id"] == "0x1ded"
    assert erdma["vendor_part_id"] == 4223
    assert erdma["hw_ver"] == "0x0"
    assert erdma["phys_port_cnt"] == 1
    assert "board_id" not in erdma
    assert erdma["is_erdma"] is True
    port = erdma["ports"][0]
    assert port["port"] == 1
    assert port["state"] == "PORT_ACTIVE"
    assert port["max_mtu"] == 4096 and port["active_mtu"] == 4096
    assert port["link_layer"] == "Ethernet"
    assert port["port_lmc"] == "0x00"
    # Without -v the tool prints no width or speed: the rate is unknown, not guessed.
    assert port["link_gbps"] is None


def test_erdma_guide_verbose_output_gives_capabilities_and_25_gbps_link():
    devices, warnings = parse("erdma_guide_verbose.txt")
    assert warnings == []
    erdma = devices[0]
    assert erdma["max_qp"] == 15359
    assert erdma["max_cqe"] == 1048576
    assert erdma["max_mr_size"] == "0x1000000000"
    assert erdma["device_cap_flags"] == "0x00208000"
    assert erdma["device_cap_flags_list"] == ["MEM_MGT_EXTENSIONS"]
    assert erdma["device_cap_flags_unknown"] == "0x8000"
    assert erdma["atomic_cap"] == "ATOMIC_GLOB"
    assert erdma["rc_odp_caps"] == ["NO SUPPORT"]
    assert erdma["general_odp_caps"] == []
    assert erdma["num_comp_vectors"] == 16
    assert erdma["qp_rate_limit_max"] == "0kbps"
    assert erdma["not_supported"] == ["completion_timestamp_mask", "core_clock", "tag_matching"]
    port = erdma["ports"][0]
    assert port["active_width"] == "4X"
    assert port["active_speed"] == "25.0 Gbps"
    assert port["active_speed_gbps"] == 25.0
    assert port["gid_tbl_len"] == 1
    assert port["max_vl_num"] == "invalid value"
    # eRDMA prints 4X x 25 Gbps for a 25 Gb/s port; the guide measured ~24 Gb/s on it.
    assert port["link_gbps"] == 25.0


def test_mlx5_ofed_verbose_output_keeps_ofed_extras_and_gids():
    devices, warnings = parse("mlx5_ofed_verbose.txt")
    assert warnings == []
    mlx5 = devices[0]
    assert mlx5["hca_id"] == "mlx5_3"
    assert mlx5["board_id"] == "MT_2420110004"
    assert mlx5["is_erdma"] is False
    assert "EXT_SEND NOP" in mlx5["device_cap_exp_flags_list"]
    assert mlx5["device_cap_exp_flags_unknown"] == "0x200000000000"
    assert mlx5["log_atomic_arg_sizes_mask"] == "0x8"
    assert mlx5["max_fetch_and_add_bit_boundary"] == 64
    assert mlx5["ooo_xrc_caps"] == "0x0"
    assert mlx5["dc_odp_caps"] == ["SUPPORT_SEND", "SUPPORT_WRITE", "SUPPORT_READ", "SUPPORT_SRQ_RECV"]
    assert mlx5["max_entity_size"] == 2147483648
    port = mlx5["ports"][0]
    assert (port["state"], port["active_mtu"], port["phys_state"]) == ("PORT_ACTIVE", 1024, "LINK_UP")
    assert [gid["index"] for gid in port["gids"]] == [0, 1, 2, 3]
    assert port["gids"][2]["gid"] == "0000:0000:0000:0000:0000:ffff:c0a8:f238"
    assert port["link_gbps"] == 10.0


def test_mlx4_two_hcas_with_two_ports_each_keep_order_and_down_ports():
    devices, warnings = parse("mlx4_two_hcas.txt")
    assert warnings == []
    assert [device["hca_id"] for device in devices] == ["mlx4_1", "mlx4_0"]
    for device in devices:
        assert device["board_id"] == "MT_1090120019"
        assert [(port["port"], port["state"]) for port in device["ports"]] == [(1, "PORT_ACTIVE"), (2, "PORT_DOWN")]
        assert device["ports"][0]["link_layer"] == "InfiniBand"
    assert by_id(devices)["mlx4_0"]["ports"][0]["port_lid"] == 32


def test_rxe_plain_output_with_two_hcas():
    devices, warnings = parse("rxe_two_hcas.txt")
    assert warnings == []
    assert sorted(by_id(devices)) == ["rxe_client", "rxe_server"]
    assert all(device["vendor_id"] == "0xffffff" for device in devices)
    assert all(device["ports"][0]["active_mtu"] == 1024 for device in devices)


def test_rxe_verbose_gids_carry_their_roce_version():
    devices, _warnings = parse("rxe_verbose_two_hcas.txt")
    rxe1_port = by_id(devices)["rxe_1"]["ports"][0]
    assert rxe1_port["gids"][1] == {"index": 1, "gid": "::ffff:192.168.96.111", "type": "RoCE v2"}
    assert rxe1_port["active_width"] == "1X"
    assert rxe1_port["link_gbps"] == 10.0
    assert by_id(devices)["rxe_0"]["device_cap_flags_ex_unknown"] == "0x1C000000000"


def test_output_cut_inside_last_device_keeps_the_whole_ones_and_warns():
    devices, warnings = parse("rxe_verbose_cut.txt")
    assert [device["hca_id"] for device in devices] == ["rxe_0"]
    assert len(warnings) == 1
    assert "rxe_1" in warnings[0]


def test_output_cut_inside_only_device_gives_no_device_and_a_warning():
    devices, warnings = parse("erdma_guide_verbose_cut.txt")
    assert devices == []
    assert "erdma_0" in warnings[0]


def test_no_ib_devices_found_is_an_empty_list_not_an_error():
    assert parse("no_devices.txt") == ([], [])


def test_kernel_without_rdma_core_is_an_empty_list():
    assert parse("no_rdma_kernel_debian12.txt") == ([], [])


def test_empty_text_is_an_empty_list():
    assert parse_devinfo("") == ([], [])


@pytest.mark.parametrize(
    "device, port, expected",
    [
        ({"transport": "InfiniBand", "hca_id": "mlx5_0"}, {"active_width": "4X", "active_speed_gbps": 25.0}, 100.0),
        ({"transport": "InfiniBand", "hca_id": "mlx5_0"}, {"active_width": "12X", "active_speed_gbps": 2.5}, 30.0),
        ({"transport": "eRDMA", "hca_id": "erdma_0"}, {"active_width": "4X", "active_speed_gbps": 25.0}, 25.0),
        ({"transport": "InfiniBand", "vendor_id": "0x1ded"}, {"active_width": "4X", "active_speed_gbps": 25.0}, 25.0),
        ({"transport": "InfiniBand", "hca_id": "mlx5_0"}, {"active_width": "4X"}, None),
        ({"transport": "InfiniBand", "hca_id": "mlx5_0"}, {"active_width": "?", "active_speed_gbps": 25.0}, None),
    ],
)
def test_link_rate_rule_per_transport(device, port, expected):
    assert link_gbps(device, port) == expected


def test_devinfo_command_adds_device_and_verbose_flags():
    assert devinfo_command("/usr/bin/ibv_devinfo") == ["/usr/bin/ibv_devinfo"]
    assert devinfo_command("ibv_devinfo", verbose=True, device="erdma_0") == ["ibv_devinfo", "-d", "erdma_0", "-v"]


@pytest.mark.parametrize("port", [2, None])
def test_one_port_of_a_two_port_hca_printed_with_dash_i_is_kept(port):
    # `ibv_devinfo -d mlx4_1 -i 2`: phys_port_cnt says 2, only port 2 follows. It used to be dropped
    # as "ends inside device"; a cut output can never lack port 1, so port 2 alone is a selection.
    devices, warnings = parse_devinfo(fixture("mlx4_port2_only.txt"), port)
    assert warnings == []
    assert [d["hca_id"] for d in devices] == ["mlx4_1"]
    mlx4 = devices[0]
    assert mlx4["phys_port_cnt"] == 2 and mlx4["port_selected"] == 2
    assert [(p["port"], p["state"]) for p in mlx4["ports"]] == [(2, "PORT_DOWN")]


def test_one_port_verbose_has_its_rate_and_gid():
    devices, warnings = parse_devinfo(fixture("mlx4_port2_only_verbose.txt"), 2)
    assert warnings == []
    port = devices[0]["ports"][0]
    assert port["port"] == 2 and port["phys_state"] == "POLLING"
    # 4X at 2.5 Gbps per lane (SDR) = 10 Gb/s.
    assert port["link_gbps"] == 10.0
    assert port["gids"] == [{"index": 0, "gid": "fe80:0000:0000:0000:7cfe:9003:00a5:95c2"}]


def test_a_port_other_than_the_one_asked_for_is_not_taken_for_it():
    devices, warnings = parse_devinfo(fixture("mlx4_port2_only.txt"), 1)
    assert devices == []
    assert "ends inside device mlx4_1" in warnings[0]


def test_all_ports_printed_have_no_port_selected():
    devices, _warnings = parse("mlx4_two_hcas.txt")
    assert [d["port_selected"] for d in devices] == [None, None]


def test_dash_i_is_on_the_command_line():
    assert devinfo_command("/usr/bin/ibv_devinfo", True, "mlx4_1", 2) == [
        "/usr/bin/ibv_devinfo", "-d", "mlx4_1", "-i", "2", "-v"]
