"""Input drift: live feature values counted into the training data's bins, scored by PSI.

Training stores a reference per feature in the model card under `card["drift"]` (see
`reference`): interior bin edges at the training quantiles and the share of training rows in each
bin. Serving counts every live value into those bins and exposes, per model and feature:

- `inference_drift_bin_total{model,version,feature,bin}`: live values per reference bin;
- `inference_drift_out_of_range_total{model,version,feature}`: live values outside the training
  minimum and maximum;
- `inference_drift_psi{model,version,feature}`: the population stability index of the live
  values against the reference, computed when /metrics is scraped from the counts summed over
  every worker, once a model has seen at least `min_rows` live rows.

Why PSI: it is the standard drift score for binned tabular features (credit scoring has used it
for decades), it needs only the bin counts that are cheap to keep per request and that sum
across processes, and its conventional thresholds are easy to act on: below 0.1 no real change,
0.1 to 0.25 a moderate shift, above 0.25 a significant one. PSI = sum over bins of
(live - ref) * ln(live / ref), with shares clipped below at `EPSILON` so that an empty bin gives a
large but finite term.

The request path only adds to a per-process tally under a lock (about 2 µs for a 2-row request);
a background thread moves the tallies into the Prometheus counters every `FLUSH_SECONDS`, and a
scrape or a summary flushes its own process first. A crash loses at most that interval of counts.
"""

from __future__ import annotations

import atexit
import glob
import math
import os
import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

CARD_KEY = "drift"
"""Where the reference lives in the model card."""
DEFAULT_BINS = 10
DEFAULT_MIN_ROWS = 200
"""No score before this many live rows: with 10 bins, PSI between two samples of one
distribution is about 9/n from sampling noise alone, so 200 rows keep that under 0.05."""
EPSILON = 1e-4
"""Floor for a bin's share in the PSI sum, so that an empty bin gives a finite term."""
MODERATE, SIGNIFICANT = 0.1, 0.25
"""The conventional PSI thresholds; the alert rules use SIGNIFICANT."""
FLUSH_SECONDS = 1.0
SMALL_BATCH = 16
"""Up to this many rows, Python's bisect beats numpy's per-call overhead (bench/drift_bench.py)."""

BIN_METRIC = "inference_drift_bin"
OUT_OF_RANGE_METRIC = "inference_drift_out_of_range"
PSI_METRIC = "inference_drift_psi"


def reference(
    x: npt.ArrayLike, features: Sequence[str], bins: int = DEFAULT_BINS
) -> dict[str, Any]:
    """The per-feature reference of training data `x` [N, F], JSON-serialisable.

    Interior edges are training quantiles taken at data values, deduplicated, and below the
    maximum, so that every bin holds at least one training row (discrete features get fewer
    bins). Bins are right-closed: bin i holds edges[i-1] < v <= edges[i]; the first and last are
    open-ended. Values are compared as float32, the type the model and the tracker see.
    """
    data = np.asarray(x, dtype=np.float32)
    if data.ndim != 2 or data.shape[1] != len(features) or data.shape[0] == 0:
        raise ValueError(
            f"reference data must be [rows, {len(features)}] with at least one row, "
            f"got shape {data.shape}"
        )
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    quantiles = np.arange(1, bins) / bins
    columns = {}
    for name, column in zip(features, data.T, strict=True):
        top = column.max()
        edges = np.unique(np.quantile(column, quantiles, method="lower"))
        edges = edges[edges < top]
        counts = np.bincount(np.searchsorted(edges, column, side="left"), minlength=len(edges) + 1)
        columns[name] = {
            "edges": [float(e) for e in edges],
            "proportions": [float(c) / len(column) for c in counts],
            "min": float(column.min()),
            "max": float(top),
        }
    return {"method": "psi", "rows": int(data.shape[0]), "features": columns}


def psi(live: Sequence[float], expected: Sequence[float]) -> float:
    """Population stability index of live bin counts against reference proportions."""
    total = sum(live)
    if total <= 0:
        return 0.0
    score = 0.0
    for count, ref in zip(live, expected, strict=True):
        q, p = max(count / total, EPSILON), max(ref, EPSILON)
        score += (q - p) * math.log(q / p)
    return score


class DriftTracker:
    """Counts one model version's live inputs into its reference bins."""

    def __init__(
        self,
        model_name: str,
        features: Sequence[str],
        reference: Mapping[str, Any],
        *,
        metrics: DriftMetrics,
        version: str = "",
    ) -> None:
        self.model_name, self.version = model_name, version
        self.features = tuple(features)
        try:
            columns = [reference["features"][name] for name in self.features]
        except KeyError as missing:
            raise ValueError(f"the drift reference has no feature {missing}") from None
        self.reference = reference
        self.edges = [np.asarray(c["edges"], dtype=np.float32) for c in columns]
        self.expected = [tuple(float(p) for p in c["proportions"]) for c in columns]
        widths = [len(e) + 1 for e in self.edges]
        if any(len(p) != w for p, w in zip(self.expected, widths, strict=True)):
            raise ValueError(
                "the drift reference has a feature whose proportions do not fit its edges"
            )
        # Each feature counts into slots [below min, bin 0, ..., bin k, above max]: one search
        # over the edges [just below min, *edges, max] gives bin and range at once.
        low = [np.float32(c["min"]) for c in columns]
        searched = [
            np.array([np.nextafter(lo, np.float32(-np.inf)), *edges, c["max"]], dtype=np.float32)
            for lo, edges, c in zip(low, self.edges, columns, strict=True)
        ]
        if any(np.any(np.diff(e) <= 0) for e in searched):
            raise ValueError("a drift reference feature needs min <= edges < max, edges increasing")
        self._searched = searched
        self._widths = [len(e) + 1 for e in searched]
        starts = np.cumsum([0, *self._widths])
        self._slots = int(starts[-1])
        self._offsets = starts[:-1].astype(np.intp)
        self._columns = [
            ([float(e) for e in edges], int(start))
            for edges, start in zip(searched, self._offsets, strict=True)
        ]
        self._tally = [0] * self._slots
        self._bulk = np.zeros(self._slots, dtype=np.int64)
        self._lock = threading.Lock()
        labels = (model_name, version)
        self._children = [
            (
                [metrics.bins.labels(*labels, name, str(b)) for b in range(width)],
                metrics.out_of_range.labels(*labels, name),
            )
            for name, width in zip(self.features, widths, strict=True)
        ]

    def observe(self, x: npt.NDArray[np.float32]) -> None:
        """Count a float32 matrix [N, F] of live inputs (already validated as finite)."""
        if len(x) <= SMALL_BATCH:
            rows = x.tolist()
            with self._lock:
                tally = self._tally
                for row in rows:
                    for (edges, start), v in zip(self._columns, row, strict=True):
                        tally[start + bisect_left(edges, v)] += 1
            return
        columns = np.ascontiguousarray(x.T)
        index = np.empty(columns.shape, dtype=np.intp)
        for f, searched in enumerate(self._searched):
            index[f] = np.searchsorted(searched, columns[f], side="left")
        index += self._offsets[:, None]
        counted = np.bincount(index.ravel(), minlength=self._slots)
        with self._lock:
            self._bulk += counted

    def flush(self) -> None:
        """Move this process's tallies into the (multi-process) Prometheus counters."""
        with self._lock:
            tally, self._tally = self._tally, [0] * self._slots
            bulk, self._bulk = self._bulk, np.zeros_like(self._bulk)
        total = (bulk + np.asarray(tally, dtype=np.int64)).tolist()
        for (bins, outside), start, width in zip(
            self._children, self._offsets, self._widths, strict=True
        ):
            slots = total[start : start + width]
            below, above = slots[0], slots[-1]
            counts = slots[1:-1]
            counts[0] += below
            counts[-1] += above
            for child, count in zip(bins, counts, strict=True):
                if count:
                    child.inc(count)
            if below + above:
                outside.inc(below + above)

    def score(self, counts: Mapping[tuple[str, str], float], min_rows: int) -> dict[str, Any]:
        """Per-feature PSI, live rows and out-of-range share from counts summed over workers.

        `counts` maps (feature, bin) to a bin count and (feature, "") to the out-of-range count.
        """
        features: dict[str, Any] = {}
        rows = 0
        for name, expected, edges in zip(self.features, self.expected, self.edges, strict=True):
            live = [counts.get((name, str(b)), 0.0) for b in range(len(expected))]
            n = int(sum(live))
            rows = max(rows, n)
            outside = counts.get((name, ""), 0.0)
            features[name] = {
                "psi": round(psi(live, expected), 6) if n >= min_rows else None,
                "rows": n,
                "out_of_range_share": round(outside / n, 6) if n else 0.0,
                "edges": [float(e) for e in edges],
                "reference": list(expected),
                "live": [round(c / n, 6) if n else 0.0 for c in live],
            }
        return {
            "model": self.model_name,
            "version": self.version,
            "method": "psi",
            "rows": rows,
            "min_rows": min_rows,
            "scored": rows >= min_rows,
            "thresholds": {"moderate": MODERATE, "significant": SIGNIFICANT},
            "features": features,
        }


class DriftMetrics:
    """The drift metric families on one registry, and the tracker of each live model."""

    def __init__(self, registry: CollectorRegistry, min_rows: int = DEFAULT_MIN_ROWS) -> None:
        if min_rows < 1:
            raise ValueError(f"the drift minimum sample must be at least 1 row, got {min_rows}")
        self.min_rows = min_rows
        self._live: dict[str, DriftTracker] = {}
        self._by_version: dict[tuple[str, str], DriftTracker | None] = {}
        self._current: dict[str, str] = {}  # the live version of each model
        self._lock = threading.Lock()
        # Registered before the counters: a scrape collects in registration order, and this
        # collector flushes the tallies first, so the counters it reports are current too.
        registry.register(self.collector)
        self.bins = Counter(
            BIN_METRIC,
            "Live input values per feature, counted into the training data's reference bins.",
            ["model", "version", "feature", "bin"],
            registry=registry,
        )
        self.out_of_range = Counter(
            OUT_OF_RANGE_METRIC,
            "Live input values outside the training data's minimum and maximum.",
            ["model", "version", "feature"],
            registry=registry,
        )
        _flusher().add(self)

    @property
    def collector(self) -> _PsiCollector:
        return _PsiCollector(self)

    def track(
        self, model_name: str, version: str, features: Sequence[str], card: Mapping[str, Any]
    ) -> DriftTracker | None:
        """Make this model version the live one and return its tracker, built from its card.

        None when the card holds no drift reference. A new version of a model replaces the
        previous one's tracker, whose score then leaves /metrics; going back to an earlier
        version builds its tracker again, which resumes that version's counters.
        """
        return self._track(model_name, version, features, card, replace=True)

    def _track(
        self,
        model_name: str,
        version: str,
        features: Sequence[str],
        card: Mapping[str, Any],
        replace: bool,
    ) -> DriftTracker | None:
        # _by_version holds one entry per model, its current version: a hit needs no lock.
        key = (model_name, version)
        if (found := self._by_version.get(key)) is not None:
            return found
        with self._lock:
            if key in self._by_version or (not replace and model_name in self._current):
                return self._by_version.get(key)
            previous = self._live.pop(model_name, None)
            if previous is not None:
                previous.flush()
            if (old := self._current.get(model_name)) is not None:
                del self._by_version[(model_name, old)]
            tracker = None
            if (ref := card.get(CARD_KEY)) is not None:
                tracker = DriftTracker(model_name, features, ref, metrics=self, version=version)
                self._live[model_name] = tracker
            self._current[model_name] = version
            self._by_version[key] = tracker
            return tracker

    def observe(
        self,
        model_name: str,
        version: str,
        features: Sequence[str],
        card: Mapping[str, Any],
        x: npt.NDArray[np.float32],
    ) -> None:
        """Count a request's inputs for a model version.

        Nothing is counted when its card has no reference, or for a request still finishing on
        a version that another has replaced.
        """
        tracker = self._by_version.get((model_name, version))
        if tracker is None:
            if model_name in self._current:
                return  # this version has no reference, or another version is live
            # First use without a load-time track(); checked again under the lock, so that a
            # racing request on a replaced version never displaces the live one.
            tracker = self._track(model_name, version, features, card, replace=False)
            if tracker is None:
                return
        tracker.observe(x)

    def flush(self) -> None:
        for tracker in list(self._live.values()):
            tracker.flush()

    def trackers(self) -> list[DriftTracker]:
        return list(self._live.values())

    def counts(self) -> dict[tuple[str, str], dict[tuple[str, str], float]]:
        """Counts summed over every worker: (model, version) -> (feature, bin or "") -> count."""
        self.flush()
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        families: Iterable[Metric]
        if path:
            files = glob.glob(os.path.join(path, "counter_*.db"))
            families = MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
        else:
            families = [*self.bins.collect(), *self.out_of_range.collect()]
        out: dict[tuple[str, str], dict[tuple[str, str], float]] = {}
        for family in families:
            if family.name not in (BIN_METRIC, OUT_OF_RANGE_METRIC):
                continue
            for s in family.samples:
                if not s.name.endswith("_total"):
                    continue
                labels = s.labels
                per_model = out.setdefault((labels["model"], labels["version"]), {})
                key = (labels["feature"], labels.get("bin", ""))
                per_model[key] = per_model.get(key, 0.0) + s.value
        return out

    def summary(
        self, model_name: str, version: str, features: Sequence[str], card: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Per-feature PSI, rows and out-of-range share of a model, as JSON for a drift endpoint."""
        tracker = self.track(model_name, version, features, card)
        if tracker is None:
            return {
                "model": model_name,
                "version": version,
                "method": "psi",
                "scored": False,
                "reason": f"The model card has no {CARD_KEY!r} reference; retrain to add one.",
                "features": {},
            }
        counts = self.counts().get((model_name, version), {})
        return tracker.score(counts, self.min_rows)


class _PsiCollector:
    """Yields inference_drift_psi for every live tracker, from the counts of all workers."""

    def __init__(self, drift: DriftMetrics) -> None:
        self.drift = drift

    def describe(self) -> list[Metric]:
        return [self._family()]

    def collect(self) -> list[Metric]:
        family = self._family()
        trackers = self.drift.trackers()
        if not trackers:
            return [family]
        counts = self.drift.counts()
        for tracker in trackers:
            scored = tracker.score(
                counts.get((tracker.model_name, tracker.version), {}), self.drift.min_rows
            )
            for name, figures in scored["features"].items():
                if figures["psi"] is not None:
                    family.add_metric([tracker.model_name, tracker.version, name], figures["psi"])
        return [family]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            PSI_METRIC,
            "Population stability index of live inputs against the training reference "
            "(0.1 moderate, 0.25 significant); absent until the minimum sample is reached.",
            labels=["model", "version", "feature"],
        )


class _Flusher:
    """One daemon thread per process moving every tracker's tallies into the counters."""

    def __init__(self) -> None:
        self._all: weakref.WeakSet[DriftMetrics] = weakref.WeakSet()
        threading.Thread(target=self._run, name="drift-flush", daemon=True).start()
        atexit.register(self.flush)

    def add(self, metrics: DriftMetrics) -> None:
        self._all.add(metrics)

    def flush(self) -> None:
        for metrics in list(self._all):
            metrics.flush()

    def _run(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            self.flush()


_FLUSHERS: dict[int, _Flusher] = {}


def _flusher() -> _Flusher:
    # Keyed by pid: a forked worker does not inherit the parent's thread.
    pid = os.getpid()
    if pid not in _FLUSHERS:
        _FLUSHERS[pid] = _Flusher()
    return _FLUSHERS[pid]
