"""The rollout's metrics from the local gateway: its Prometheus ``/metrics``, scraped before and after a step."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from driftloop.errors import ConfigError, UnavailableError
from driftloop.rollout.metrics import RequestMetrics, ServingTarget, Window

# Counters per (version, outcome) and latency sum/count per version, for one model.
Snapshot = dict[tuple[str, str], float]


class GatewayRequestMetrics(RequestMetrics):
    """Reads ``driftloop_requests_total`` and the latency histogram of one model from a gateway.

    Args:
        gateway_url: The gateway's base URL (``/metrics`` is appended).
        model: The model whose series count.
    """

    def __init__(self, gateway_url: str, model: str) -> None:
        if not gateway_url.startswith(("http://", "https://")):
            raise ConfigError(f"gateway URL must start with http:// or https://, got '{gateway_url}'")
        self.url = gateway_url.rstrip("/") + "/metrics"
        self.model = model

    def mark(self) -> Snapshot:
        return scrape_gateway(self.url, self.model)

    def since(self, mark: object, targets: list[ServingTarget]) -> dict[int, Window]:
        after = scrape_gateway(self.url, self.model)
        return {t.version: window(mark, after, t.version) for t in targets}  # type: ignore[arg-type]


def scrape_gateway(url: str, model: str) -> Snapshot:
    """Reads the driftloop counters of ``model`` from a gateway's /metrics."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"gateway URL must start with http:// or https://, got '{url}'")
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - an operator-given http URL
            text = response.read().decode()
    except (OSError, ValueError) as exc:  # URLError, refused connections and timeouts are OSErrors
        raise UnavailableError(f"cannot read the gateway's metrics at {url}: {getattr(exc, 'reason', exc)}") from None
    return parse_metrics(text, model)


def parse_metrics(text: str, model: str) -> Snapshot:
    snapshot: Snapshot = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("model") != model:
                continue
            version = labels.get("version", "")
            if sample.name == "driftloop_requests_total":
                key = (version, labels["outcome"])
                snapshot[key] = snapshot.get(key, 0.0) + sample.value  # summed over endpoints
            elif sample.name == "driftloop_request_latency_seconds_sum":
                snapshot[(version, "latency_sum")] = snapshot.get((version, "latency_sum"), 0.0) + sample.value
            elif sample.name == "driftloop_request_latency_seconds_count":
                snapshot[(version, "latency_count")] = snapshot.get((version, "latency_count"), 0.0) + sample.value
    return snapshot


def window(before: Snapshot, after: Snapshot, version: int) -> Window:
    """The difference of two snapshots for one version."""
    v = str(version)

    def delta(kind: str) -> float:
        return after.get((v, kind), 0.0) - before.get((v, kind), 0.0)

    ok, errors = delta("ok"), delta("error")
    return Window(int(ok + errors), int(errors), delta("latency_sum"), int(delta("latency_count")))
