# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rounds of link measurements: every pair once, no host twice in a round, max-degree rounds."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import itertools
import random

import pytest

from ansible_collections.erdma.pd.plugins.plugin_utils.link_schedule import (
    ScheduleError,
    link_pairs,
    max_degree,
    sample_rounds,
    schedule_rounds,
)


def fleet(prefill, decode):
    return ["p%02d" % i for i in range(prefill)], ["d%02d" % i for i in range(decode)]


def assert_valid(pairs, rounds):
    scheduled = [tuple(pair) for pairs_of_round in rounds for pair in pairs_of_round]
    assert sorted(scheduled) == sorted(tuple(pair) for pair in pairs)  # every pair exactly once
    for pairs_of_round in rounds:
        hosts = [host for pair in pairs_of_round for host in pair]
        assert len(hosts) == len(set(hosts)), pairs_of_round  # no host twice in a round


@pytest.mark.parametrize("prefill, decode", [(1, 1), (1, 4), (4, 1), (2, 3), (4, 4), (6, 6), (16, 16), (3, 11)])
def test_complete_bipartite_fleet_needs_max_degree_rounds(prefill, decode):
    pairs = link_pairs(*fleet(prefill, decode))
    rounds = schedule_rounds(pairs)
    assert_valid(pairs, rounds)
    assert len(rounds) == max(prefill, decode) == max_degree(pairs)


def test_sixteen_by_sixteen_is_sixteen_rounds_not_256_runs():
    pairs = link_pairs(*fleet(16, 16))
    assert len(pairs) == 256
    rounds = schedule_rounds(pairs)
    assert len(rounds) == 16 and all(len(r) == 16 for r in rounds)


@pytest.mark.parametrize("seed", range(20))
def test_any_bipartite_subset_needs_max_degree_rounds(seed):
    # Sampled or partly failed fleets leave an arbitrary bipartite graph: still max-degree rounds,
    # which is where the alternating-path swaps are needed (a greedy colouring needs more).
    generator = random.Random(seed)
    prefill, decode = fleet(generator.randint(1, 9), generator.randint(1, 9))
    pairs = [list(p) for p in itertools.product(prefill, decode) if generator.random() < 0.6] or [[prefill[0], decode[0]]]
    generator.shuffle(pairs)
    rounds = schedule_rounds(pairs)
    assert_valid(pairs, rounds)
    assert len(rounds) == max_degree(pairs)


def test_a_host_in_both_groups_is_still_never_twice_in_a_round():
    pairs = link_pairs(["a", "b", "c"], ["b", "c", "d"])
    assert ["b", "b"] not in pairs and ["c", "c"] not in pairs
    rounds = schedule_rounds(pairs)
    assert_valid(pairs, rounds)


def test_rounds_keep_the_order_pairs_were_given_in():
    rounds = schedule_rounds([["p1", "d1"], ["p2", "d2"]])
    assert rounds == [[["p1", "d1"], ["p2", "d2"]]]


@pytest.mark.parametrize("pairs, words", [
    ([["p1", "p1"]], "cannot measure a link to itself"),
    ([["p1", "d1"], ["p1", "d1"]], "listed twice"),
    ([["p1"]], "a pair is [client, server]"),
])
def test_pairs_that_make_no_sense_are_refused(pairs, words):
    with pytest.raises(ScheduleError, match=r".*" + words.replace("[", r"\[").replace("]", r"\]")):
        schedule_rounds(pairs)


def test_sampling_two_rounds_of_a_four_by_four_fleet_measures_every_host():
    pairs = link_pairs(*fleet(4, 4))
    chosen, left_out = sample_rounds(schedule_rounds(pairs), 2)
    assert len(chosen) == 2 and len(left_out) == 8
    measured = set(host for r in chosen for pair in r for host in pair)
    assert measured == set(host for pair in pairs for host in pair)


def test_sampling_covers_the_larger_side_as_soon_as_the_limit_allows():
    # 8 prefill x 2 decode: 8 rounds of 2 pairs; 4 rounds reach all 8 prefill hosts.
    pairs = link_pairs(*fleet(8, 2))
    chosen, left_out = sample_rounds(schedule_rounds(pairs), 4)
    assert set(pair[0] for r in chosen for pair in r) == set("p%02d" % i for i in range(8))
    assert len(left_out) == 16 - 8


@pytest.mark.parametrize("limit", [0, 4, 9])
def test_no_sampling_when_the_limit_is_zero_or_not_below_the_rounds(limit):
    rounds = schedule_rounds(link_pairs(*fleet(4, 4)))
    assert sample_rounds(rounds, limit) == (rounds, [])


def test_a_negative_limit_is_refused():
    with pytest.raises(ScheduleError):
        sample_rounds([], -1)
