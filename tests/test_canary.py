"""Judging a canary: metrics read from the real service, quantiles, label distance, verdicts."""

from __future__ import annotations

import math

import pytest
from flask.testing import FlaskClient

from inference_service.deploy.canary import (
    Snapshot,
    judge,
    label_distance,
    parse,
    quantile,
)
from inference_service.deploy.settings import DeploySettings
from inference_service.smoke import ORIGINAL_PAYLOAD
from tests.conftest import original_labels

SETTINGS = DeploySettings()


def snapshot(client: FlaskClient) -> Snapshot:
    return parse(client.get("/metrics").get_data(as_text=True))


def test_reads_traffic_errors_latency_and_labels_from_the_service(client: FlaskClient) -> None:
    before = snapshot(client)
    for _ in range(3):
        assert client.post("/inference", json=ORIGINAL_PAYLOAD).status_code == 200
    assert client.post("/inference", data=b"not json").status_code == 400
    client.get("/readyz")
    window = snapshot(client) - before
    assert window.requests == 4  # probes and scrapes are not traffic
    assert window.errors == 0  # a 400 is the client's error, not the release's
    assert window.buckets[math.inf] == 4
    assert window.labels == {
        label: 3.0 * original_labels().count(label) for label in set(original_labels())
    }
    assert window.p99 is not None and window.p99 > 0


def test_a_failure_before_routing_counts_against_the_release() -> None:
    text = (
        "# TYPE inference_requests_total counter\n"
        'inference_requests_total{endpoint="unmatched",method="POST",status="500"} 3\n'
        'inference_requests_total{endpoint="/inference",method="POST",status="200"} 7\n'
        'inference_requests_total{endpoint="/readyz",method="GET",status="503"} 5\n'
    )
    found = parse(text)
    assert (found.requests, found.errors) == (10, 3)


def test_sums_over_labels_it_does_not_know() -> None:
    text = (
        "# TYPE inference_requests_total counter\n"
        'inference_requests_total{endpoint="/inference",method="POST",status="200",model="a"} 6\n'
        'inference_requests_total{endpoint="/inference",method="POST",status="500",model="b"} 2\n'
        'inference_requests_total{endpoint="/metrics",method="GET",status="200",model="a"} 9\n'
        "# TYPE inference_predictions_total counter\n"
        'inference_predictions_total{label="x",model="a"} 3\n'
        'inference_predictions_total{label="x",model="b"} 1\n'
    )
    found = parse(text)
    assert (found.requests, found.errors, found.labels) == (8, 2, {"x": 4})


@pytest.mark.parametrize(
    ("buckets", "expected"),
    [
        ({0.1: 0, 1.0: 100, math.inf: 100}, 0.1 + 0.9 * 0.99),  # interpolated in its bucket
        ({0.1: 99, 1.0: 100, math.inf: 100}, 0.1),
        ({0.1: 50, 1.0: 50, math.inf: 100}, 1.0),  # beyond the last bound: that bound
        ({0.1: 0, math.inf: 0}, None),
    ],
)
def test_p99_as_prometheus_computes_it(buckets: dict[float, float], expected: float | None) -> None:
    assert quantile(0.99, buckets) == (None if expected is None else pytest.approx(expected))


def test_label_distance_is_the_share_of_predictions_that_moved() -> None:
    assert label_distance({"a": 50, "b": 50}, {"a": 5, "b": 5}) == 0
    assert label_distance({"a": 80, "b": 20}, {"a": 60, "b": 40}) == pytest.approx(0.2)
    assert label_distance({"a": 1}, {"b": 1}) == 1
    assert label_distance({}, {"a": 1}) is None


def window(requests: int, errors: int = 0, slow: bool = False, labels: str = "ab") -> Snapshot:
    bounds = {0.005: 0 if slow else requests, 0.25: requests, math.inf: requests}
    return Snapshot(
        requests=requests,
        errors=errors,
        buckets=bounds,
        labels={label: requests / len(labels) for label in labels},
    )


def test_a_canary_like_the_stable_release_is_promoted() -> None:
    verdict = judge(SETTINGS, window(1000), window(200))
    assert verdict.promote and verdict.reasons == []
    assert verdict.figures["canary"]["requests"] == 200
    assert verdict.figures["label_distance"] == 0


@pytest.mark.parametrize(
    ("canary", "reason"),
    [
        (window(200, errors=10), "error rate 5.00%"),
        (window(200, slow=True), "p99"),
        (window(200, labels="a"), "predicted labels differ"),
        (window(20), "only 20 requests reached the canary"),
    ],
)
def test_a_canary_worse_than_the_stable_release_is_rolled_back(
    canary: Snapshot, reason: str
) -> None:
    verdict = judge(SETTINGS, window(1000), canary)
    assert not verdict.promote
    assert any(reason in r for r in verdict.reasons), verdict.reasons


def test_thresholds_are_settings() -> None:
    lenient = DeploySettings(canary_max_error_rate=0.1, canary_max_label_distance=1.0)
    assert judge(lenient, window(1000), window(200, errors=10, labels="a")).promote
