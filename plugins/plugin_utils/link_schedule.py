# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rounds of link measurements for the rdma_verify role (controller side only).

A perftest run occupies both of its hosts' NICs: two runs that share a host measure each other's
traffic, not the link. So the prefill -> decode pairs are grouped into rounds in which every host
takes part in at most one run, and the runs of one round go at the same time.

Pairs are the edges of a graph whose vertices are hosts; a round is a matching; a schedule is an
edge colouring. When no host is both a client and a server, the graph is bipartite and König's
theorem gives a colouring with exactly max-degree colours: for 16 prefill x 16 decode hosts, 16
rounds instead of 256 serial runs. The colouring below is the classic alternating-path one: give an
edge a colour free at both ends, or swap two colours along a path so that one becomes free.
A host in both groups makes the graph general; then a greedy colouring is used (at most
2 x max-degree - 1 rounds), which is still correct (no host twice in a round).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ScheduleError(Exception):
    """The pairs cannot be scheduled as given."""


def _check_pairs(pairs):
    seen = set()
    for pair in pairs:
        if len(pair) != 2:
            raise ScheduleError("a pair is [client, server]; found %r" % (pair,))
        client, server = pair
        if client == server:
            raise ScheduleError("%s cannot measure a link to itself" % client)
        if (client, server) in seen:
            raise ScheduleError("the pair %s -> %s is listed twice" % (client, server))
        seen.add((client, server))


def max_degree(pairs):
    """The largest number of pairs that one host takes part in: the fewest rounds possible."""
    count = {}
    for client, server in pairs:
        count[client] = count.get(client, 0) + 1
        count[server] = count.get(server, 0) + 1
    return max(count.values()) if count else 0


def _first_free(colours_at, vertex):
    colour = 0
    while colour in colours_at.get(vertex, {}):
        colour += 1
    return colour


def _swap_along_path(colours_at, start, first, second):
    """Swap colours `first` and `second` on the path from `start` that alternates between them."""
    path, vertex, colour = [], start, first
    while colour in colours_at.get(vertex, {}):
        following = colours_at[vertex][colour]
        path.append((vertex, following, colour))
        vertex, colour = following, (second if colour == first else first)
    for one, other, colour in path:
        del colours_at[one][colour]
        del colours_at[other][colour]
    for one, other, colour in path:
        swapped = second if colour == first else first
        colours_at[one][swapped] = other
        colours_at[other][swapped] = one


def _colour_bipartite(pairs):
    colours_at = {}  # host -> {colour: host at the other end of the pair with that colour}
    for client, server in pairs:
        at_client = _first_free(colours_at, client)
        at_server = _first_free(colours_at, server)
        if at_client not in colours_at.get(server, {}):
            colour = at_client
        else:
            # at_client is taken at the server: free it there. The swapped path starts at the
            # server and can never reach the client (bipartite, and at_client is free at it).
            _swap_along_path(colours_at, server, at_client, at_server)
            colour = at_client
        colours_at.setdefault(client, {})[colour] = server
        colours_at.setdefault(server, {})[colour] = client
    colour_of = {}
    for client, server in pairs:
        for colour, other in colours_at[client].items():
            if other == server:
                colour_of[(client, server)] = colour
    return colour_of


def _colour_greedy(pairs):
    busy, colour_of = {}, {}
    for client, server in pairs:
        colour = 0
        while colour in busy.get(client, set()) or colour in busy.get(server, set()):
            colour += 1
        busy.setdefault(client, set()).add(colour)
        busy.setdefault(server, set()).add(colour)
        colour_of[(client, server)] = colour
    return colour_of


def schedule_rounds(pairs):
    """Group [client, server] pairs into rounds; in a round no host appears twice.

    Returns a list of rounds, each a list of [client, server] in the order the pairs were given.
    """
    pairs = [tuple(pair) for pair in pairs]
    _check_pairs(pairs)
    clients = set(client for client, _server in pairs)
    servers = set(server for _client, server in pairs)
    colour_of = _colour_bipartite(pairs) if not clients & servers else _colour_greedy(pairs)
    rounds = {}
    for pair in pairs:
        rounds.setdefault(colour_of[pair], []).append(list(pair))
    return [rounds[colour] for colour in sorted(rounds)]


def sample_rounds(rounds, limit):
    """At most `limit` rounds (0: all) that cover as many hosts as the limit allows.

    Rounds are taken greedily by the hosts they add that no chosen round has measured yet, so a
    fleet's every host is measured at least once as soon as the limit permits; the order of the
    schedule breaks ties. Returns (chosen rounds in schedule order, pairs left out).
    """
    if limit < 0:
        raise ScheduleError("the round limit is 0 (all rounds) or a positive number; found %d" % limit)
    if limit == 0 or limit >= len(rounds):
        return [list(r) for r in rounds], []
    covered, chosen = set(), []
    for _step in range(limit):
        candidates = [i for i in range(len(rounds)) if i not in chosen]
        best = max(candidates, key=lambda i: (len(_hosts(rounds[i]) - covered), -i))
        chosen.append(best)
        covered |= _hosts(rounds[best])
    chosen.sort()
    left_out = [pair for i, pairs in enumerate(rounds) if i not in chosen for pair in pairs]
    return [rounds[i] for i in chosen], left_out


def _hosts(pairs):
    return set(host for pair in pairs for host in pair)


def link_pairs(clients, servers):
    """Every client -> server pair, in group order, without a host paired with itself."""
    return [[client, server] for client in clients for server in servers if client != server]
