"""Drift tracking: reference bins, live counts, PSI, and counts summed across real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from inference_service import drift

FEATURES = ("a", "b")
ROOT = Path(__file__).resolve().parents[1]


def training(rows: int = 5_000, seed: int = 0) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(10, 2, rows), rng.gamma(2.0, 1.5, rows)])


def expected_psi(live: npt.NDArray[Any], column: dict[str, Any]) -> float:
    """PSI written out independently of drift.py: np.digitize bins, vectorised sum."""
    bins = np.digitize(live.astype(np.float32), np.asarray(column["edges"], np.float32), right=True)
    q = np.bincount(bins, minlength=len(column["proportions"])) / len(live)
    p = np.asarray(column["proportions"])
    q, p = np.maximum(q, drift.EPSILON), np.maximum(p, drift.EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def tracked(
    ref: dict[str, Any], min_rows: int = drift.DEFAULT_MIN_ROWS
) -> tuple[drift.DriftMetrics, drift.DriftTracker, CollectorRegistry]:
    registry = CollectorRegistry(auto_describe=True)
    metrics = drift.DriftMetrics(registry, min_rows)
    tracker = metrics.track("m", "1", FEATURES, {drift.CARD_KEY: ref})
    assert tracker is not None
    return metrics, tracker, registry


def scraped(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def psi_of(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], feature: str) -> float:
    key = ("inference_drift_psi", (("feature", feature), ("model", "m"), ("version", "1")))
    return samples[key]


# --- the reference ------------------------------------------------------------------------------


def test_reference_is_json_with_quantile_bins_that_all_hold_training_rows() -> None:
    x = training()
    ref = drift.reference(x, FEATURES, bins=10)
    assert json.loads(json.dumps(ref)) == ref
    assert ref["rows"] == len(x) and ref["method"] == "psi"
    for f, name in enumerate(FEATURES):
        column = ref["features"][name]
        assert len(column["edges"]) == 9
        assert column["edges"] == sorted(column["edges"])
        assert len(column["proportions"]) == 10
        assert sum(column["proportions"]) == pytest.approx(1.0)
        assert min(column["proportions"]) > 0
        assert max(column["proportions"]) == pytest.approx(0.1, abs=0.01)
        assert column["min"] == float(np.float32(x[:, f].min()))
        assert column["max"] == float(np.float32(x[:, f].max()))


def test_discrete_features_get_one_bin_per_value_without_empty_bins() -> None:
    rng = np.random.default_rng(1)
    flags = rng.choice([0.0, 1.0], size=1000, p=[0.93, 0.07])
    grades = rng.choice([1.0, 2.0, 3.0], size=1000)
    ref = drift.reference(np.column_stack([flags, grades]), FEATURES)
    assert ref["features"]["a"]["edges"] == [0.0]
    assert ref["features"]["a"]["proportions"] == [
        pytest.approx(np.mean(flags == 0)),
        pytest.approx(np.mean(flags == 1)),
    ]
    assert ref["features"]["b"]["edges"] == [1.0, 2.0]
    constant = drift.reference(np.ones((50, 2)), FEATURES)
    assert constant["features"]["a"] == {"edges": [], "proportions": [1.0], "min": 1.0, "max": 1.0}


def test_edges_are_float32_values_so_live_float32_inputs_land_in_the_training_bin() -> None:
    # 4.9 is not a float32: compared as float64 the float32 input 4.9 would sit above an edge of
    # 4.9 and be counted one bin higher than the same training value.
    x = np.array([[4.9, 1.0]] * 10 + [[5.5, 1.0]] * 10)
    ref = drift.reference(x, FEATURES, bins=2)
    metrics, tracker, _ = tracked(ref, min_rows=1)
    tracker.observe(x.astype(np.float32))
    summary = metrics.summary("m", "1", FEATURES, {drift.CARD_KEY: ref})
    assert summary["features"]["a"]["live"] == [0.5, 0.5]
    assert summary["features"]["a"]["psi"] == 0.0


@pytest.mark.parametrize(
    ("shape", "bins"), [((0, 2), 10), ((10, 3), 10), ((10,), 10), ((10, 2), 0)]
)
def test_reference_refuses_data_that_does_not_fit(shape: tuple[int, ...], bins: int) -> None:
    with pytest.raises(ValueError, match="rows|bins"):
        drift.reference(np.zeros(shape), FEATURES, bins)


def test_a_tracker_refuses_a_reference_without_its_features() -> None:
    ref = drift.reference(training(100), ("a", "c"))
    with pytest.raises(ValueError, match="no feature 'b'"):
        tracked(ref)
    ref = drift.reference(training(100), FEATURES)
    ref["features"]["a"]["edges"].reverse()
    with pytest.raises(ValueError, match="edges increasing"):
        tracked(ref)
    ref = drift.reference(training(100), FEATURES)
    ref["features"]["b"]["proportions"].pop()
    with pytest.raises(ValueError, match="do not fit its edges"):
        tracked(ref)


# --- live counts and the score ------------------------------------------------------------------


def test_inputs_from_the_training_distribution_score_below_the_moderate_threshold() -> None:
    ref = drift.reference(training(seed=0), FEATURES)
    metrics, tracker, registry = tracked(ref)
    live = training(rows=3_000, seed=7).astype(np.float32)
    for start in range(0, len(live), 2):  # as 2-row requests
        tracker.observe(live[start : start + 2])
    samples = scraped(registry)
    for f, name in enumerate(FEATURES):
        score = psi_of(samples, name)
        assert score < drift.MODERATE
        assert score == pytest.approx(expected_psi(live[:, f], ref["features"][name]), abs=1e-6)


def test_a_shifted_distribution_scores_above_the_significant_threshold() -> None:
    ref = drift.reference(training(seed=0), FEATURES)
    metrics, tracker, registry = tracked(ref)
    live = training(rows=3_000, seed=7)
    live[:, 0] += 2.0  # one standard deviation
    live[:, 1] *= 1.6
    tracker.observe(live.astype(np.float32))
    samples = scraped(registry)
    for f, name in enumerate(FEATURES):
        score = psi_of(samples, name)
        assert score > drift.SIGNIFICANT
        assert score == pytest.approx(expected_psi(live[:, f], ref["features"][name]), abs=1e-6)


def test_small_and_large_batches_count_the_same() -> None:
    ref = drift.reference(training(seed=0), FEATURES)
    live = (training(rows=400, seed=3) * 1.2).astype(np.float32)
    one, one_tracker, _ = tracked(ref)
    for row in live:
        one_tracker.observe(row[None, :])
    many, many_tracker, _ = tracked(ref)
    many_tracker.observe(live)
    card = {drift.CARD_KEY: ref}
    assert one.summary("m", "1", FEATURES, card) == many.summary("m", "1", FEATURES, card)


def test_out_of_range_values_are_counted_per_feature() -> None:
    ref = drift.reference(np.array([[0.0, 0.0], [10.0, 10.0], [5.0, 5.0]]), FEATURES)
    metrics, tracker, registry = tracked(ref, min_rows=1)
    tracker.observe(np.array([[-1, 5], [11, 5], [10, 10], [0, 10.5]], dtype=np.float32))
    tracker.observe(np.tile(np.array([[-0.5, 5]], dtype=np.float32), (100, 1)))
    samples = scraped(registry)
    out = "inference_drift_out_of_range_total"
    assert samples[(out, (("feature", "a"), ("model", "m"), ("version", "1")))] == 102
    assert samples[(out, (("feature", "b"), ("model", "m"), ("version", "1")))] == 1
    summary = metrics.summary("m", "1", FEATURES, {drift.CARD_KEY: ref})
    assert summary["rows"] == 104
    assert summary["features"]["a"]["out_of_range_share"] == pytest.approx(102 / 104, abs=1e-6)
    assert summary["features"]["b"]["out_of_range_share"] == pytest.approx(1 / 104, abs=1e-6)


def test_no_score_before_the_minimum_sample() -> None:
    ref = drift.reference(training(), FEATURES)
    metrics, tracker, registry = tracked(ref, min_rows=50)
    shifted = (training(rows=49, seed=5) + 100).astype(np.float32)
    tracker.observe(shifted)
    assert not any(name == "inference_drift_psi" for name, _ in scraped(registry))
    summary = metrics.summary("m", "1", FEATURES, {drift.CARD_KEY: ref})
    assert summary["scored"] is False and summary["rows"] == 49
    assert summary["features"]["a"]["psi"] is None
    assert summary["features"]["a"]["out_of_range_share"] == 1.0
    tracker.observe(shifted[:1])
    assert psi_of(scraped(registry), "a") > drift.SIGNIFICANT
    with pytest.raises(ValueError, match="at least 1 row"):
        drift.DriftMetrics(CollectorRegistry(), min_rows=0)


def test_a_new_version_replaces_the_previous_score() -> None:
    ref = drift.reference(training(), FEATURES)
    metrics, tracker, registry = tracked(ref, min_rows=1)
    tracker.observe(training(rows=10).astype(np.float32))
    newer = metrics.track("m", "2", FEATURES, {drift.CARD_KEY: ref})
    assert newer is not None and newer is not tracker
    newer.observe(training(rows=10).astype(np.float32))
    versions = {
        dict(labels)["version"] for name, labels in scraped(registry) if name.endswith("psi")
    }
    assert versions == {"2"}
    assert metrics.track("m", "2", FEATURES, {}) is newer
    # A request still finishing on version 1 is not counted and does not bring it back.
    card = {drift.CARD_KEY: ref}
    metrics.observe("m", "1", FEATURES, card, training(rows=10).astype(np.float32))
    assert metrics.trackers() == [newer]
    assert metrics.summary("m", "2", FEATURES, card)["rows"] == 10
    # Rolling back to version 1 tracks it again, from the counts it had.
    again = metrics.track("m", "1", FEATURES, card)
    assert again is not None and metrics.trackers() == [again]
    again.observe(training(rows=5).astype(np.float32))
    assert metrics.summary("m", "1", FEATURES, card)["rows"] == 15
    versions = {
        dict(labels)["version"] for name, labels in scraped(registry) if name.endswith("psi")
    }
    assert versions == {"1"}


def test_a_request_on_a_replaced_version_never_displaces_the_live_one() -> None:
    ref = drift.reference(training(), FEATURES)
    metrics = drift.DriftMetrics(CollectorRegistry(), min_rows=1)
    rows = training(rows=4).astype(np.float32)
    metrics.observe("m", "1", FEATURES, {drift.CARD_KEY: ref}, rows)  # first use, no load
    assert [t.version for t in metrics.trackers()] == ["1"]
    # Version 2 goes live without a reference; a request finishing on 1 must not revive it.
    assert metrics.track("m", "2", FEATURES, {}) is None
    metrics.observe("m", "1", FEATURES, {drift.CARD_KEY: ref}, rows)
    assert metrics.trackers() == []
    # Back and forth between a version with a reference and one without.
    assert metrics.track("m", "3", FEATURES, {drift.CARD_KEY: ref}) is not None
    assert metrics.track("m", "2", FEATURES, {}) is None
    assert metrics.trackers() == []
    assert metrics.track("m", "3", FEATURES, {drift.CARD_KEY: ref}) is not None
    assert [t.version for t in metrics.trackers()] == ["3"]


def test_a_card_without_a_reference_is_not_tracked() -> None:
    metrics = drift.DriftMetrics(CollectorRegistry())
    metrics.observe("m", "1", FEATURES, {}, np.zeros((2, 2), dtype=np.float32))
    summary = metrics.summary("m", "1", FEATURES, {})
    assert summary["scored"] is False and "no 'drift' reference" in summary["reason"]
    assert metrics.trackers() == []


# --- several worker processes -------------------------------------------------------------------

WORKER = """
import json, sys
import numpy as np
from prometheus_client import CollectorRegistry
from inference_service import drift

ref = json.loads(open(sys.argv[1]).read())
x = np.load(sys.argv[2])
metrics = drift.DriftMetrics(CollectorRegistry())
tracker = metrics.track("m", "1", ("a", "b"), {"drift": ref})
for row in x[:20]:
    tracker.observe(row[None, :])
tracker.observe(x[20:])
# No explicit flush: the tally left at exit must reach the counters.
"""


def test_counts_from_two_processes_are_summed_into_one_score(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = drift.reference(training(seed=0), FEATURES)
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    parts = [
        (training(rows=700, seed=1) + [0.0, 0.0]).astype(np.float32),
        (training(rows=500, seed=2) + [3.0, 2.0]).astype(np.float32),
    ]
    workers = []
    for i, part in enumerate(parts):
        np.save(tmp_path / f"x{i}.npy", part)
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WORKER,
                    str(tmp_path / "ref.json"),
                    str(tmp_path / f"x{i}.npy"),
                ],
                env=env,
            )
        )
    assert [w.wait(timeout=60) for w in workers] == [0, 0]
    assert len(list(metrics_dir.glob("counter_*.db"))) == 2

    # The scraping process: the same tracker, reading the summed counts of both workers.
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    metrics = drift.DriftMetrics(CollectorRegistry(), min_rows=100)
    assert metrics.track("m", "1", FEATURES, {drift.CARD_KEY: ref}) is not None
    registry.register(metrics.collector)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    samples = scraped(registry)
    summary = metrics.summary("m", "1", FEATURES, {drift.CARD_KEY: ref})
    both = np.vstack(parts)
    assert summary["rows"] == len(both) == 1200
    for f, name in enumerate(FEATURES):
        column = ref["features"][name]
        bins = np.digitize(both[:, f], np.asarray(column["edges"], np.float32), right=True)
        counts = np.bincount(bins, minlength=len(column["proportions"]))
        for b, count in enumerate(counts):
            key = (("bin", str(b)), ("feature", name), ("model", "m"), ("version", "1"))
            assert samples[("inference_drift_bin_total", key)] == count
        assert psi_of(samples, name) == pytest.approx(expected_psi(both[:, f], column), abs=1e-6)
        assert summary["features"][name]["psi"] == pytest.approx(psi_of(samples, name), abs=1e-6)
        # One worker alone would give a different score: the sum is what is scored.
        alone = expected_psi(parts[0][:, f], column)
        assert abs(alone - psi_of(samples, name)) > 0.01


# --- in the service -----------------------------------------------------------------------------


def test_training_stores_a_reference_for_every_feature(trained: Path) -> None:
    from inference_service import artifact

    card = artifact.read(trained).card
    ref = card[drift.CARD_KEY]
    assert list(ref["features"]) == card["features"]
    assert all(sum(c["proportions"]) == pytest.approx(1.0) for c in ref["features"].values())


def test_inference_requests_are_counted_in_the_live_models_bins(client: FlaskClient) -> None:
    from inference_service.smoke import ORIGINAL_PAYLOAD

    def rows_per_feature() -> dict[str, float]:
        text = client.get("/metrics").get_data(as_text=True)
        totals: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "inference_drift_bin_total":
                    totals[s.labels["feature"]] = totals.get(s.labels["feature"], 0) + s.value
        return totals

    before = rows_per_feature()
    assert client.post("/inference", json=ORIGINAL_PAYLOAD).status_code == 200
    tensor = {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": [1] * 12}]}
    assert client.post("/v2/models/iris/infer", json=tensor).status_code == 200
    assert client.post("/inference", json=[{"0": 1}]).status_code == 400  # not counted
    after = rows_per_feature()
    assert len(after) == 4
    assert all(after[name] - before.get(name, 0) == 5 for name in after)


def test_every_worker_tracks_the_live_model_from_load_not_from_its_first_request(
    client: FlaskClient,
) -> None:
    # With several workers, the one answering a scrape may not have served a request yet; it
    # must still know the reference to score the counts the others wrote.
    [tracker] = client.application.extensions["metrics"].drift.trackers()
    assert tracker.model_name == "iris"
    text = client.get("/metrics").get_data(as_text=True)
    assert 'inference_drift_bin_total{bin="0",feature="petal_width",model="iris"' in text


def test_the_minimum_sample_is_a_setting_that_refuses_nonsense() -> None:
    from inference_service.config import Settings

    assert Settings().drift_min_rows == drift.DEFAULT_MIN_ROWS
    assert Settings.from_env({"INFERENCE_DRIFT_MIN_ROWS": "50"}).drift_min_rows == 50
    with pytest.raises(ValueError, match="INFERENCE_DRIFT_MIN_ROWS must be at least 1"):
        Settings.from_env({"INFERENCE_DRIFT_MIN_ROWS": "0"})
