"""The rollout's metrics from Prometheus in a cluster: requests, server errors and latency per serving version.

Three generations of series can tell what a version did (:data:`SERIES`):

- ``knative``: Knative ≥ 1.19 queue-proxies (OpenTelemetry): ``kn_serving_invocation_duration_seconds``
  (1.21 and later) or ``kn_queueproxy_app_duration_seconds`` (1.19, 1.20), a histogram in seconds with
  ``http_response_status_code``. Exported only with ``request-metrics-protocol: prometheus`` in Knative's
  ``config-observability`` (the default is ``none``). It carries no revision label of its own: the scrape
  config must copy the pod's ``serving.knative.dev/revision`` label to ``revision`` (and the namespace to
  ``namespace``).
- ``knative-legacy``: Knative ≤ 1.18 queue-proxies (OpenCensus): ``revision_request_count`` and
  ``revision_request_latencies`` (milliseconds) with ``response_code_class``, ``namespace_name``,
  ``revision_name``.
- ``runtime``: driftloop's own serving runtime, in either deployment mode: ``driftloop_requests_total`` by
  ``outcome`` and ``driftloop_request_latency_seconds``, keyed by ``model`` and ``version`` (plus the
  ``namespace`` the scrape config adds).

``auto`` reads the first of these that has series for the targets and keeps to it.

A window is counted exactly, not estimated: :meth:`PrometheusMetrics.since` fetches the raw counter
samples of each target's series and adds up, per series, how far the counter rose after the mark,
starting from its last sample at or before the mark (or from 0 for a series born after it, such as a
new pod's) and restarting from 0 where a counter fell (a restarted pod). PromQL's ``increase()`` would
instead extrapolate the rise to the window's edges, which scales a count by up to (window + 2 scrape
intervals) / window — double the truth for a 30 s step scraped every 30 s — instead of counting it.
The window ends at each series' last scrape before the call, so it lags by up to one scrape
interval; requests in that lag fall into the next window, which starts from the same samples. The
mark and the end are this machine's clock, sent as the queries' ``time``: a skewed clock shifts the window,
it does not stretch it. One query per target fetches both the samples before the mark and those after
it, so behind a load-balanced pair of Prometheus replicas a target's counts come from one replica.
Counts are the same as the gateway's (:mod:`driftloop.rollout.gateway_metrics`): a caller's 4xx is neither a
request nor an error of the version, 5xx are errors, latency is that of successful requests.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from driftloop.errors import ConfigError, DriftloopError, UnavailableError
from driftloop.rollout.metrics import RequestMetrics, ServingTarget, Window

log = logging.getLogger(__name__)

AUTO = "auto"
DEFAULT_TIMEOUT_S = 10.0
# How far before the mark a series' last sample is looked for. Prometheus' own default lookback delta:
# a series with no sample for this long counts as gone, and one that shows up after the mark as new.
BASELINE_LOOKBACK_S = 300


class PrometheusError(DriftloopError):
    """Prometheus answered, but not with the data a query asks for."""


def _status_outcome(code: str) -> str:
    """``200``, ``2xx`` → ok; ``4..`` → invalid (the caller's mistake); ``5..`` → error."""
    return {"4": "invalid", "5": "error"}.get(code[:1], "ok")


@dataclass(frozen=True)
class SeriesFamily:
    """One generation of request series: the metrics that count what, and the labels that scope them.

    Attributes:
        name: What users pass as ``series``.
        requests: Counters of answered requests (several names when a Knative release renamed them).
        latency_sum: Counters of the time they took, in ``latency_unit_s``.
        latency_count: Counters of the requests whose time is in ``latency_sum``.
        namespace_label: The label holding the serving namespace.
        key_label: The label telling one target from another.
        keyed_by_revision: Whether ``key_label`` holds a target's revision (else its version number).
        outcome_label: The label holding a status code, a code class or a runtime outcome.
        outcome: Maps that label's value to ok | invalid | error.
        latency_unit_s: Seconds per unit of ``latency_sum``.
        model_label: The label holding the model name, where series of several models share a revision label.
    """

    name: str
    requests: tuple[str, ...]
    latency_sum: tuple[str, ...]
    latency_count: tuple[str, ...]
    namespace_label: str
    key_label: str
    keyed_by_revision: bool
    outcome_label: str
    outcome: Callable[[str], str]
    latency_unit_s: float = 1.0
    model_label: str | None = None

    def __post_init__(self) -> None:
        # The names go into a regex matcher unescaped; plain metric names have no regex metacharacters.
        assert all(re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", n) for n in self.metric_names)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.requests + self.latency_sum + self.latency_count)))

    def key(self, target: ServingTarget) -> str:
        return target.revision if self.keyed_by_revision else str(target.version)

    def selector(self, namespace: str, model: str, key: str) -> str:
        """The PromQL series selector of one target's series, every label value escaped."""
        matchers = [f'__name__=~"{"|".join(self.metric_names)}"', f"{self.namespace_label}={promql_string(namespace)}"]
        if self.model_label:
            matchers.append(f"{self.model_label}={promql_string(model)}")
        matchers.append(f"{self.key_label}={promql_string(key)}")
        return "{" + ", ".join(matchers) + "}"


_KN = ("kn_serving_invocation_duration_seconds", "kn_queueproxy_app_duration_seconds")  # ≥ 1.21, 1.19–1.20
FAMILIES: dict[str, SeriesFamily] = {f.name: f for f in (
    SeriesFamily(
        "knative", requests=tuple(f"{n}_count" for n in _KN), latency_sum=tuple(f"{n}_sum" for n in _KN),
        latency_count=tuple(f"{n}_count" for n in _KN), namespace_label="namespace", key_label="revision",
        keyed_by_revision=True, outcome_label="http_response_status_code", outcome=_status_outcome),
    SeriesFamily(
        "knative-legacy", requests=("revision_request_count",), latency_sum=("revision_request_latencies_sum",),
        latency_count=("revision_request_latencies_count",), namespace_label="namespace_name",
        key_label="revision_name", keyed_by_revision=True, outcome_label="response_code_class",
        outcome=_status_outcome, latency_unit_s=0.001),  # OpenCensus recorded whole milliseconds
    SeriesFamily(
        "runtime", requests=("driftloop_requests_total",), latency_sum=("driftloop_request_latency_seconds_sum",),
        latency_count=("driftloop_request_latency_seconds_count",), namespace_label="namespace",
        key_label="version", keyed_by_revision=False, outcome_label="outcome",
        outcome=lambda value: value or "ok",  # the runtime times successful requests only: no outcome label
        model_label="model"),
)}
SERIES = (*FAMILIES, AUTO)  # auto tries the families in this order


def promql_string(value: str) -> str:
    """A PromQL double-quoted string literal holding exactly ``value``.

    PromQL strings take Go's escapes; JSON's (``\\"``, ``\\\\``, ``\\n``, ``\\uXXXX`` for control
    characters) are a subset of them, so a quote or backslash in a name can neither end the string nor
    inject PromQL.
    """
    return json.dumps(value, ensure_ascii=False)


def _host(url: str) -> str:
    try:
        return httpx.URL(url).host
    except httpx.InvalidURL:
        return ""


def counter_increase(samples: list[tuple[float, float]], mark: float) -> float:
    """How far a counter rose after ``mark``, from raw ``(time, value)`` samples in time order.

    Starts from the last sample at or before ``mark``, or from 0 when the series began after it; a
    value below its predecessor is a counter that restarted from 0. Never negative.
    """
    previous, rise = 0.0, 0.0
    for at, value in samples:
        if at <= mark:
            previous = value
        else:
            rise += value - previous if value >= previous else value
            previous = value
    return rise


class PrometheusMetrics(RequestMetrics):
    """Reads what each serving version did from Prometheus' HTTP API.

    Args:
        url: Prometheus' base URL, e.g. ``http://prometheus-k8s.monitoring:9090`` (a path prefix is kept).
        namespace: The namespace the InferenceService serves in.
        model: The InferenceService (model) name; the runtime series carry it as ``model``.
        series: One of :data:`SERIES`.
        timeout: Seconds any one request to Prometheus may take.
        bearer_token: Sent as ``Authorization: Bearer`` when Prometheus sits behind an auth proxy.
    """

    def __init__(self, url: str, namespace: str, model: str, series: str = AUTO,
                 timeout: float = DEFAULT_TIMEOUT_S, bearer_token: str | None = None) -> None:
        if not url.startswith(("http://", "https://")) or not _host(url):
            raise ConfigError(f"Prometheus URL must start with http:// or https:// and name a host, got '{url}'")
        if series not in SERIES:
            raise ConfigError(f"unknown Prometheus series '{series}'; choose one of: {', '.join(SERIES)}")
        if not namespace or not model:
            raise ConfigError("reading Prometheus needs the serving namespace and the model name")
        self.url = url.rstrip("/")
        self.namespace, self.model, self.series, self.timeout = namespace, model, series, timeout
        self._headers = {"Authorization": f"Bearer {bearer_token}"} if bearer_token else {}
        self._family: SeriesFamily | None = None if series == AUTO else FAMILIES[series]
        self._checked = False

    @property
    def family(self) -> str | None:
        """The series family being read (for ``auto``: None until one has shown series)."""
        return self._family.name if self._family else None

    def mark(self) -> float:
        """Now, as a UNIX time. The first mark also checks Prometheus answers, so a wrong URL fails at once."""
        if not self._checked:
            self._query("vector(1)", time.time())
            self._checked = True
        return time.time()

    def since(self, mark: object, targets: list[ServingTarget]) -> dict[int, Window]:
        if not isinstance(mark, (int, float)):
            raise TypeError(f"mark must be what PrometheusMetrics.mark() returned, got {mark!r}")
        now = time.time()
        families = [self._family] if self._family else list(FAMILIES.values())
        for family in families:
            windows, found = self._read(family, float(mark), now, targets)
            if found:
                if self._family is None:
                    self._family = family
                    log.info("Prometheus at %s: reading %s series for %s in namespace %s",
                             self.url, family.name, self.model, self.namespace)
                return windows
        log.warning("Prometheus at %s has no %s series for %s in namespace %s (targets %s) yet; "
                    "see the README's Prometheus section for the scrape configuration they need",
                    self.url, " or ".join(f.name for f in families), self.model, self.namespace,
                    ", ".join(f"v{t.version}={t.revision or '-'}" for t in targets))
        return {t.version: Window() for t in targets}

    def _read(self, family: SeriesFamily, mark: float, now: float,
              targets: list[ServingTarget]) -> tuple[dict[int, Window], bool]:
        """Each target's window from ``family``, and whether any target had series at all."""
        window_s = math.ceil(max(now - mark, 0.0)) + BASELINE_LOOKBACK_S
        windows, found, by_key = {}, False, {}
        for target in targets:
            key = family.key(target)
            if not key:  # a revision-keyed family cannot place a target without a revision
                windows[target.version] = Window()
                continue
            if key not in by_key:  # one version may appear in several traffic entries
                series = self._query(f"{family.selector(self.namespace, self.model, key)}[{window_s}s]", now)
                found = found or bool(series)
                by_key[key] = _window(family, series, mark)
            windows[target.version] = by_key[key]
        return windows, found

    def _query(self, promql: str, at: float) -> list[dict]:
        """The result of an instant query evaluated at ``at``; one-line errors for everything that can fail."""
        try:
            response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql, "time": f"{at:.3f}"},
                                 headers=self._headers, timeout=self.timeout)
        except httpx.TimeoutException:
            raise PrometheusError(f"Prometheus at {self.url} did not answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise UnavailableError(f"cannot reach Prometheus at {self.url}: {exc}") from None
        if response.status_code in (401, 403):
            raise ConfigError(f"Prometheus at {self.url} refused the query (HTTP {response.status_code}); "
                              f"does it need a bearer token?")
        try:
            body = response.json()
            status = body["status"]
        except (ValueError, TypeError, KeyError):
            snippet = " ".join(response.text[:80].split())
            raise PrometheusError(f"{self.url} does not answer like Prometheus' HTTP API (HTTP {response.status_code}"
                                  f", {response.headers.get('content-type', 'no content type')}): {snippet!r}"
                                  ) from None
        if status != "success":
            error = " ".join(str(body.get("error", "")).split())
            raise PrometheusError(f"Prometheus at {self.url} rejected the query {promql}: "
                                  f"{body.get('errorType', 'error')}: {error}")
        data = body.get("data") or {}
        if not isinstance(data.get("result"), list):
            raise PrometheusError(f"Prometheus at {self.url} answered the query {promql} without a result")
        return data["result"]


def _window(family: SeriesFamily, series: list[dict], mark: float) -> Window:
    """Adds up the counters of one target's series (all pods, status codes and scopes) after ``mark``."""
    requests = errors = latency_sum = latency_count = 0.0
    for one in series:
        labels = one["metric"]
        name = labels.get("__name__", "")
        # Raw samples; a value that is not a finite number (NaN, ±Inf) says nothing about a count.
        samples = [(float(t), float(v)) for t, v in one.get("values", []) if math.isfinite(float(v))]
        rise = counter_increase(samples, mark)
        outcome = family.outcome(labels.get(family.outcome_label, ""))
        if name in family.requests and outcome != "invalid":
            requests += rise
            errors += rise if outcome == "error" else 0.0
        if outcome == "ok":
            latency_sum += rise * family.latency_unit_s if name in family.latency_sum else 0.0
            latency_count += rise if name in family.latency_count else 0.0
    # The counters count whole requests; round only the float arithmetic away.
    return Window(round(requests), round(errors), latency_sum, round(latency_count))
