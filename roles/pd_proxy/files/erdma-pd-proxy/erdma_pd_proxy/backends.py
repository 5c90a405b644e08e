# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Prefill and decode backends: health state, requests in flight, and the choice among them."""
import itertools
import logging

LOG = logging.getLogger("pd_proxy")


class Backend:
    def __init__(self, role, url):
        self.role = role
        self.url = url.rstrip("/")
        self.healthy = True
        self.inflight = 0

    def mark(self, healthy, why=""):
        if healthy != self.healthy:
            LOG.warning("%s backend %s is %s%s", self.role, self.url,
                        "back in service" if healthy else "out of service", f": {why}" if why else "")
        self.healthy = healthy


class Pool:
    """Backends of one role; picks a healthy one by policy, skipping those already tried."""

    def __init__(self, role, urls, policy):
        self.role = role
        self.backends = [Backend(role, url) for url in urls]
        self.policy = policy
        self._turn = itertools.count()

    def any_healthy(self):
        return any(b.healthy for b in self.backends)

    def pick(self, exclude=()):
        candidates = [b for b in self.backends if b.healthy and b not in exclude]
        if not candidates:
            return None
        start = next(self._turn) % len(candidates)
        rotated = candidates[start:] + candidates[:start]  # round-robin order breaks ties fairly
        if self.policy == "least_inflight":
            return min(rotated, key=lambda b: b.inflight)
        return rotated[0]

    def summary(self):
        return {"healthy": sum(b.healthy for b in self.backends), "total": len(self.backends),
                "backends": [{"url": b.url, "healthy": b.healthy, "inflight": b.inflight} for b in self.backends]}
