"""Judging a canary by its own metrics against the stable release's, over the same window.

Each release is scraped directly on its socket, so the figures are that release's alone. Metrics
are read by name and summed over every label not needed here (endpoint, method, model, ...), so
new labels do not change the verdict.

- error rate: the share of 5xx answers; the canary may exceed the stable release's rate by at
  most `canary_max_error_rate`.
- p99 latency: from the duration histogram's buckets, interpolated within a bucket as
  Prometheus' histogram_quantile does; the canary fails if it is above both
  `canary_max_p99_ratio` times the stable p99 and the stable p99 plus `canary_p99_allowance`.
- predicted labels (classifiers): the total variation distance between the two releases' label
  shares, half the sum of absolute differences: the share of predictions that would have to
  change label for the distributions to match. Unlike a chi-square test, whose p-value falls
  towards 0 for any difference once traffic is large, it measures how big the shift is and
  means the same at 100 requests or 100,000.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from inference_service.deploy import uds
from inference_service.deploy.settings import ENV, DeploySettings

REQUESTS = "inference_requests_total"
DURATION_BUCKET = "inference_request_duration_seconds_bucket"
PREDICTIONS = "inference_predictions_total"
IN_FLIGHT = "inference_requests_in_flight"
# Probes and scrapes say nothing about how a release serves its clients. Requests that matched
# no route ("unmatched") stay in: a release failing before routing must count against it.
NOT_TRAFFIC = frozenset({"/livez", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"})


@dataclass(frozen=True)
class Snapshot:
    """Cumulative counts since the release started (or differences between two snapshots)."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)
    """Upper bound (seconds, inf last) -> requests at most that long, cumulative."""
    labels: dict[str, float] = field(default_factory=dict)
    in_flight: float = 0.0

    def __sub__(self, before: Snapshot) -> Snapshot:
        return Snapshot(
            requests=self.requests - before.requests,
            errors=self.errors - before.errors,
            buckets={le: n - before.buckets.get(le, 0.0) for le, n in self.buckets.items()},
            labels={k: n - before.labels.get(k, 0.0) for k, n in self.labels.items()},
            in_flight=self.in_flight,
        )

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p99(self) -> float | None:
        return quantile(0.99, self.buckets)


def parse(text: str) -> Snapshot:
    requests = errors = in_flight = 0.0
    buckets: dict[float, float] = defaultdict(float)
    labels: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, tags, value = sample.name, sample.labels, float(sample.value)
            if name == REQUESTS and tags.get("endpoint") not in NOT_TRAFFIC:
                requests += value
                errors += value if tags.get("status", "").startswith("5") else 0.0
            elif name == DURATION_BUCKET and tags.get("endpoint") not in NOT_TRAFFIC:
                buckets[float(tags["le"])] += value
            elif name == PREDICTIONS:
                labels[tags.get("label", "")] += value
            elif name == IN_FLIGHT:
                in_flight += value
    return Snapshot(requests, errors, dict(sorted(buckets.items())), dict(labels), in_flight)


def scrape(sock: Path, timeout: float = 5.0) -> Snapshot:
    """The release's /metrics, over its own socket. Raises OSError if it does not answer 200."""
    status, body = uds.request(sock, "GET", "/metrics", timeout=timeout)
    if status != 200:
        raise OSError(f"GET /metrics on {sock}: HTTP {status}")
    return parse(body.decode())


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative `buckets`; None without observations."""
    if not buckets:
        return None
    total = buckets[max(buckets)]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in sorted(buckets.items()):
        if count >= rank:
            if math.isinf(upper):
                return lower  # the highest finite bound, as Prometheus answers
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def label_distance(a: dict[str, float], b: dict[str, float]) -> float | None:
    """Total variation distance between two label tallies; None if either is empty."""
    total_a, total_b = sum(a.values()), sum(b.values())
    if total_a <= 0 or total_b <= 0:
        return None
    keys = set(a) | set(b)
    return 0.5 * sum(abs(a.get(k, 0.0) / total_a - b.get(k, 0.0) / total_b) for k in keys)


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reasons: list[str]
    figures: dict[str, Any]


def figures(stable: Snapshot, canary: Snapshot) -> dict[str, Any]:
    def one(s: Snapshot) -> dict[str, Any]:
        total = sum(s.labels.values())
        p99 = s.p99
        return {
            "requests": int(s.requests),
            "errors_5xx": int(s.errors),
            "error_rate": round(s.error_rate, 5),
            "p99_ms": None if p99 is None else round(p99 * 1000, 3),
            "label_shares": {k: round(n / total, 4) for k, n in sorted(s.labels.items())}
            if total
            else {},
        }

    distance = label_distance(stable.labels, canary.labels)
    return {
        "stable": one(stable),
        "canary": one(canary),
        "label_distance": None if distance is None else round(distance, 4),
    }


def failures(settings: DeploySettings, stable: Snapshot, canary: Snapshot) -> list[str]:
    """Reasons to roll back found so far (errors only need enough canary requests)."""
    reasons: list[str] = []
    if canary.requests < settings.canary_min_requests:
        return reasons
    allowed = stable.error_rate + settings.canary_max_error_rate
    if canary.error_rate > allowed:
        reasons.append(
            f"error rate {canary.error_rate:.2%} (stable {stable.error_rate:.2%}) is above "
            f"{allowed:.2%} ({ENV['canary_max_error_rate']}={settings.canary_max_error_rate:g})"
        )
    return reasons


def judge(settings: DeploySettings, stable: Snapshot, canary: Snapshot) -> Verdict:
    """The verdict on a canary window: `stable` and `canary` are differences over it."""
    found = figures(stable, canary)
    if canary.requests < settings.canary_min_requests:
        reason = (
            f"only {int(canary.requests)} requests reached the canary, fewer than "
            f"{ENV['canary_min_requests']}={settings.canary_min_requests}: not enough to judge"
        )
        return Verdict(False, [reason], found)
    reasons = failures(settings, stable, canary)
    canary_p99, stable_p99 = canary.p99, stable.p99
    if canary_p99 is not None and stable_p99 is not None:
        limit = max(
            settings.canary_max_p99_ratio * stable_p99, stable_p99 + settings.canary_p99_allowance
        )
        if canary_p99 > limit:
            reasons.append(
                f"p99 {canary_p99 * 1000:.1f} ms is above {limit * 1000:.1f} ms (stable "
                f"{stable_p99 * 1000:.1f} ms x {ENV['canary_max_p99_ratio']}="
                f"{settings.canary_max_p99_ratio:g}, at least +"
                f"{ENV['canary_p99_allowance']}={settings.canary_p99_allowance:g} s)"
            )
    distance = label_distance(stable.labels, canary.labels)
    if distance is not None and distance > settings.canary_max_label_distance:
        reasons.append(
            f"predicted labels differ from the stable release's by {distance:.3f} (total "
            f"variation), above {ENV['canary_max_label_distance']}="
            f"{settings.canary_max_label_distance:g}"
        )
    return Verdict(not reasons, reasons, found)
