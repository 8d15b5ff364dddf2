"""Tables, targets and the chart for one benchmark run (bench/results/<timestamp>/results.json).

    .venv/bin/python bench/report.py bench/results/<timestamp> [--publish]
re-renders a saved run; --publish writes docs/performance.png and the block between the
`bench:begin`/`bench:end` markers in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
CHART = ROOT / "docs" / "performance.png"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
SUBJECT = "service"  # the row the targets are judged on: `inference-service serve --workers 1`
PAYLOAD_NAMES = {"2": "2 records", "1000": "1,000 records"}


@dataclass
class Report:
    stamp: str
    settings: dict[str, Any]
    runs: list[dict[str, Any]]
    extras: list[dict[str, Any]]
    protocols: list[dict[str, Any]] = field(default_factory=list)


def _table(header: list[str], rows: list[list[str]]) -> tuple[str, str]:
    """The same table as aligned text and as Markdown."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    text = "\n".join(
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [header, *rows]
    )
    md = "\n".join(
        ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
        + ["| " + " | ".join(r) + " |" for r in rows]
    )
    return text, md


def targets(report: Report) -> list[tuple[str, str, str, bool]]:
    runs = {r["payload"]: r for r in report.runs if r["server"] == SUBJECT}
    extra = next((e for e in report.extras if e["server"] == SUBJECT), None)
    if len(runs) < 2 or extra is None:
        return []
    small, large = runs["2"], runs["1000"]
    worker = max(r["rss_worker_mb"] for r in runs.values())
    group = max(r["rss_mb"] for r in runs.values())
    cold = statistics.median(extra["cold_s"])
    have_base = small["ratio"] > 0
    rows = [
        (
            "throughput, 2-record body",
            "≥ 15× baseline",
            f"{small['ratio']:.1f}×" if have_base else "no baseline",
            have_base and small["ratio"] >= 15,
        ),
        (
            "throughput, 1,000-record body",
            "≥ 6× baseline",
            f"{large['ratio']:.1f}×" if have_base else "no baseline",
            have_base and large["ratio"] >= 6,
        ),
        ("p99 at c16, 2-record body", "≤ 3 ms", f"{small['p99_ms']:.2f} ms", small["p99_ms"] <= 3),
        (
            "p99 at c16, 1,000-record body",
            "≤ 15 ms",
            f"{large['p99_ms']:.2f} ms",
            large["p99_ms"] <= 15,
        ),
        (
            "10,000-row request, end to end",
            "≤ 25 ms",
            f"{extra['big_ms']:.1f} ms",
            extra["big_ms"] <= 25 and extra["big_ok"],
        ),
        ("cold start", "≤ 0.3 s", f"{cold:.2f} s", cold <= 0.3),
        ("RSS per worker", "≤ 100 MB", f"{worker:.0f} MB", worker <= 100),
        ("RSS, whole server (main + 1 worker)", "≤ 130 MB", f"{group:.0f} MB", group <= 130),
    ]
    correct = all(r["errors"] == 0 for r in runs.values())
    found = [(a, b, c, d and correct) for a, b, c, d in rows]
    return found + _relative_targets(report, small)


def _relative_targets(report: Report, direct: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """Targets that compare two rows of the run: proxy and two workers against one worker on
    its port, and V2 binary tensors against JSON tensors."""
    small = {r["server"]: r for r in report.runs if r["payload"] == "2"}
    rows = []
    for name, where in (("proxy", "nginx on the worker's core"), ("proxy-own-core", "own core")):
        if (proxied := small.get(name)) is None:
            continue
        share = proxied["rps"] / direct["rps"]
        cost = proxied["cpu_us"] - direct["cpu_us"]
        rows.append(
            (
                f"through the proxy ({where}), 2-record body",
                "≥ 80 % of direct",
                f"{share:.0%} (CPU +{cost:.0f} µs/request)",
                share >= 0.8 and proxied["errors"] == 0,
            )
        )
    if (two := small.get("service-2w")) is not None:
        gain = two["rps"] / direct["rps"]
        rows.append(
            (
                "2 workers on 2 cores, 2-record body",
                "≥ 1.7× one worker",
                f"{gain:.2f}×",
                gain >= 1.7 and two["errors"] == 0,
            )
        )
    cases = {c["case"]: c for c in report.protocols}
    plain, binary = (cases.get(f"iris V2 {kind} tensors, 1000 rows") for kind in ("JSON", "binary"))
    if plain and binary:
        gain = binary["rps"] / plain["rps"]
        rows.append(
            (
                "V2 binary vs JSON tensors, 1,000 rows",
                "≥ 3×",
                f"{gain:.2f}×",
                gain >= 3 and not binary["errors"] and not plain["errors"],
            )
        )
    return rows


def protocol_table(found: list[dict[str, Any]]) -> tuple[str, str]:
    return _table(
        ["case (1 worker, 1 core)", "body bytes", "req/s", "rows/s", "p50 ms", "p99 ms", "errors"],
        [
            [
                c["case"],
                f"{c['bytes']:,}",
                f"{c['rps']:,.0f}",
                f"{c['rows_per_s']:,.0f}",
                f"{c['p50_ms']:.2f}",
                f"{c['p99_ms']:.2f}",
                f"{c['errors']}",
            ]
            for c in found
        ],
    )


def tables(report: Report) -> tuple[str, str]:
    main_rows = [
        [
            r["server"],
            PAYLOAD_NAMES[r["payload"]],
            f"{r['rps']:,.0f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r.get('cpu_us', 0):.0f}",
            f"{r['errors']}",
            f"{r['rss_mb']:.0f} / {r['rss_worker_mb']:.0f}",
            f"{r['cold_s']:.2f}",
            f"{r['ratio']:.1f}×" if r["ratio"] else "-",
        ]
        for r in report.runs
    ]
    main = _table(
        [
            "server",
            "payload",
            "req/s",
            "p50 ms",
            "p99 ms",
            "CPU µs/req",
            "errors",
            "RSS MB group / worker",
            "cold start s",
            "× baseline",
        ],
        main_rows,
    )
    base_big = next((e["big_ms"] for e in report.extras if e["server"] == "baseline"), 0.0)
    big_rows = [
        [
            e["server"],
            f"{e['big_ms']:.1f}",
            f"{e['big_samples']}",
            "ok" if e["big_ok"] else "WRONG",
            f"{base_big / e['big_ms']:.1f}×" if base_big and e["big_ms"] else "-",
            " ".join(f"{s:.2f}" for s in e["cold_s"]),
        ]
        for e in report.extras
    ]
    big = _table(
        [
            "server",
            "10,000 rows ms (median)",
            "requests",
            "answer",
            "× baseline (faster)",
            "cold starts s",
        ],
        big_rows,
    )
    goal_rows = [[a, b, c, "met" if d else "NOT met"] for a, b, c, d in targets(report)]
    goals = _table(["figure (service, 1 worker, 1 core)", "target", "measured", ""], goal_rows)
    s = report.settings
    head = (
        f"run {report.stamp}: wrk -t1 -c{s['connections']}, {s['warmup_s']} s warm-up + "
        f"{s['duration_s']} s measured per payload, server on core 0 (service-2w: both cores) "
        "and wrk on core 1"
        f"{'' if s['pinned'] else ' (NOT pinned: fewer than 2 cores)'}; bodies "
        + ", ".join(f"{k} records = {v:,} B" for k, v in s["bytes"].items())
        + f"; whole run {s['elapsed_s']:.0f} s."
    )
    parts = [main, big, goals]
    if report.protocols:
        parts.insert(2, protocol_table(report.protocols))
    text = "\n\n".join([head, *(p[0] for p in parts)])
    md = "\n\n".join([head, *(p[1] for p in parts)])
    return text, md


def chart(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = list(dict.fromkeys(r["server"] for r in report.runs))
    fig, axes = plt.subplots(2, 2, figsize=(12, 7))
    for col, payload in enumerate(PAYLOAD_NAMES):
        by = {r["server"]: r for r in report.runs if r["payload"] == payload}
        names = [n for n in order if n in by]
        colors = [
            "#999999" if n == "baseline" else "#1f77b4" if n == SUBJECT else "#8fb8de"
            for n in names
        ]
        for row, (key, unit) in enumerate((("rps", "req/s"), ("p99_ms", "p99 latency, ms"))):
            ax = axes[row][col]
            values = [by[n][key] for n in names]
            bars = ax.barh(names, values, color=colors)
            ax.invert_yaxis()
            ax.set_title(f"{PAYLOAD_NAMES[payload]}: {unit}", fontsize=10)
            for bar, n, v in zip(bars, names, values, strict=True):
                label = f"{v:,.0f}" if key == "rps" else f"{v:.1f}"
                if key == "rps" and by[n]["ratio"]:
                    label += f"  ({by[n]['ratio']:.1f}×)"
                if by[n]["errors"]:
                    label += "  ERRORS"
                ax.text(
                    bar.get_width(),
                    bar.get_y() + bar.get_height() / 2,
                    " " + label,
                    va="center",
                    fontsize=8,
                )
            ax.set_xlim(0, max(values) * 1.35 if values else 1)
            ax.tick_params(labelsize=8)
    fig.suptitle(
        f"iris inference, one worker on one core, wrk c16 (run {report.stamp})", fontsize=11
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(report: Report, out: Path, publish: bool = False) -> str:
    text, md = tables(report)
    (out / "table.txt").write_text(text + "\n")
    (out / "table.md").write_text(md + "\n")
    chart(report, out / "chart.png")
    if publish:
        shutil.copyfile(out / "chart.png", CHART)
        doc = DOC.read_text()
        if BEGIN in doc and END in doc:
            before, rest = doc.split(BEGIN, 1)
            after = rest.split(END, 1)[1]
            DOC.write_text(f"{before}{BEGIN}\n{md}\n{END}{after}")
        else:
            print(f"{DOC} has no {BEGIN} block; table not published", file=sys.stderr)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path, help="bench/results/<timestamp>")
    parser.add_argument("--publish", action="store_true")
    args = parser.parse_args()
    report = Report(**json.loads((args.run / "results.json").read_text()))
    print(render(report, args.run, publish=args.publish))
    return 0


if __name__ == "__main__":
    sys.exit(main())
