# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The proxy's Prometheus metrics, through prometheus_client, in a registry of the proxy's own."""
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

# The *_created series double the output and say nothing a restart counter does not.
disable_created_metrics()

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class BackendCollector:
    """Per-backend gauges read from the pools at scrape time (backends change state on their own)."""

    def __init__(self, pools):
        self.pools = pools

    def collect(self):
        inflight = GaugeMetricFamily("pd_proxy_backend_inflight", "Requests in flight per backend.",
                                     labels=["role", "backend"])
        healthy = GaugeMetricFamily("pd_proxy_backend_healthy", "1 when the backend passes health checks.",
                                    labels=["role", "backend"])
        for pool in self.pools:
            for backend in pool.backends:
                inflight.add_metric([backend.role, backend.url], backend.inflight)
                healthy.add_metric([backend.role, backend.url], int(backend.healthy))
        return [inflight, healthy]


class Metrics:
    def __init__(self, pools):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "pd_proxy_requests", "Client requests by endpoint and the HTTP status the client received.",
            ["endpoint", "status"], registry=self.registry)
        self.errors = Counter(
            "pd_proxy_errors", "Failures by stage (input, limit, prefill, decode, client) and reason.",
            ["stage", "reason"], registry=self.registry)
        # The split of the traffic between backends (xPyD balancing), counted when a backend answers.
        self.backend_requests = Counter(
            "pd_proxy_backend_requests", "Requests each backend answered (any HTTP status), by stage.",
            ["role", "backend"], registry=self.registry)
        self.retries = Counter(
            "pd_proxy_prefill_retries", "Prefills retried on another prefill backend.", registry=self.registry)
        self.in_progress = Gauge(
            "pd_proxy_requests_in_progress", "Completions being handled now.", registry=self.registry)
        self.latency = {
            "prefill": Histogram("pd_proxy_prefill_seconds", "Seconds from sending a prefill to its complete answer.",
                                 buckets=LATENCY_BUCKETS, registry=self.registry),
            "decode": Histogram("pd_proxy_decode_seconds", "Seconds from sending a decode to the end of its answer.",
                                buckets=LATENCY_BUCKETS, registry=self.registry),
            "ttft": Histogram("pd_proxy_ttft_seconds",
                              "Seconds from a client request's arrival to its first byte of answer (time to first token).",
                              buckets=LATENCY_BUCKETS, registry=self.registry),
        }
        self.registry.register(BackendCollector(pools))

    def count_request(self, endpoint, status):
        self.requests.labels(endpoint, str(status)).inc()

    def count_backend_answer(self, backend):
        self.backend_requests.labels(backend.role, backend.url).inc()

    def count_error(self, stage, reason):
        self.errors.labels(stage, reason).inc()

    def render(self):
        return generate_latest(self.registry)
