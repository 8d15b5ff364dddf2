"""Benchmark driver: each server in turn on 127.0.0.1, pinned, driven by wrk, every answer checked.

    bench/run.sh [--only baseline,service] [--duration 10] [--warmup 2] [--connections 16]
                 [--spawns 5] [--publish]

Per server: cold start (spawn -> first correct answer, median of --spawns spawns), then per
payload a wrk warm-up (discarded) and a measured run, a verification request, RSS of the process
group, and a 10,000-row request timed end to end over http.client. Results go to
bench/results/<timestamp>/; --publish also writes docs/performance.png and the generated block of
docs/performance.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from inference_service.model import Model

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
BASE_PORT = 18500
SEED = 20240601
# The original contract's example body (2 records).
ORIGINAL_BODY = b'[{"0":5.1,"1":3.5,"2":1.4,"3":0.2},{"0":6.2,"1":3.4,"2":5.4,"3":2.3}]'
PAYLOADS = {"2": 2, "1000": 1_000}
BIG_ROWS = 10_000
CORES = len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Server:
    name: str
    what: str
    argv: tuple[str, ...]
    answers: str  # "service": {"predictions": [...], ...}; "original": [...]
    env: tuple[tuple[str, str], ...] = ()
    cores: str = "0"  # taskset's list for the server's process group; wrk stays on core 1


def servers() -> list[Server]:
    py, cli, granian, gunicorn = (
        str(BIN / n) for n in ("python", "inference-service", "granian", "gunicorn")
    )
    factory = "inference_service.app:create_app"
    serve = (cli, *f"serve --host {HOST} --port {{port}} --workers 1".split())
    gran = (
        granian,
        *f"--interface wsgi --factory --host {HOST} --port {{port}}".split(),
        *"--workers 1 --no-ws --log-level warning".split(),
    )
    guni = (gunicorn, "-b", f"{HOST}:{{port}}", "-w", "1")
    return [
        Server(
            "baseline",
            "original design: Flask dev server, pandas, scikit-learn",
            (py, str(BENCH / "baseline_original.py"), "{port}"),
            "original",
        ),
        Server(
            "service",
            "inference-service serve --workers 1 (the default: server.py)",
            serve,
            "service",
        ),
        Server(
            "service-nolog",
            "the same with INFERENCE_ACCESS_LOG=false",
            serve,
            "service",
            (("INFERENCE_ACCESS_LOG", "false"),),
        ),
        Server(
            "proxy",
            "the service behind the deployed nginx config (bench/proxied.py), both on core 0",
            (py, str(BENCH / "proxied.py"), "{port}"),
            "service",
        ),
        Server(
            "proxy-own-core",
            "the same with nginx on core 1 (beside wrk): the worker's core does only the service",
            (py, str(BENCH / "proxied.py"), "{port}"),
            "service",
            (("BENCH_NGINX_CORES", "1"),),
        ),
        Server(
            "service-2w",
            "inference-service serve --workers 2 on both cores (wrk shares core 1)",
            (*serve[:-1], "2"),
            "service",
            cores="0,1",
        ),
        Server(
            "granian-default",
            "same app, granian WSGI CLI defaults (512 blocking threads)",
            (*gran, factory),
            "service",
        ),
        Server(
            "granian-bp16",
            "same app, granian WSGI --backpressure 16 (8 blocking threads)",
            (*gran, "--backpressure", "16", factory),
            "service",
        ),
        Server(
            "granian-bt1",
            "same app, granian WSGI --blocking-threads 1",
            (*gran, "--blocking-threads", "1", factory),
            "service",
        ),
        Server(
            "gunicorn-sync",
            "same app, gunicorn -k sync -w 1",
            (*guni, "-k", "sync", f"{factory}()"),
            "service",
        ),
        Server(
            "gunicorn-gthread",
            "same app, gunicorn -k gthread -w 1 --threads 4",
            (*guni, "-k", "gthread", "--threads", "4", f"{factory}()"),
            "service",
        ),
    ]


@dataclass
class Run:
    server: str
    payload: str
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    checked: int = 0
    verified: bool = False
    rss_mb: float = 0.0
    rss_worker_mb: float = 0.0
    cpu_us: float = 0.0
    cold_s: float = 0.0
    ratio: float = 0.0
    wrk: dict[str, Any] = field(default_factory=dict)


@dataclass
class Extra:
    server: str
    cold_s: list[float] = field(default_factory=list)
    big_ms: float = 0.0
    big_samples: int = 0
    big_ok: bool = False


# --- assets ---------------------------------------------------------------------------------


def make_rows(n: int, rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.round(rng.uniform(lo, hi, size=(n, 4)), 1)


def rows_for(model: Model, n: int, seed: int = SEED) -> np.ndarray[Any, Any]:
    """n rows drawn uniformly over the training range of each of the model's features."""
    rng = np.random.default_rng(seed)
    low = [f.min for f in model.signature.features]
    high = [f.max for f in model.signature.features]
    return rng.uniform(low, high, size=(n, model.signature.width)).astype(np.float32)


def records_body(rows: np.ndarray) -> bytes:
    return json.dumps(
        [{str(j): float(v) for j, v in enumerate(r)} for r in rows.tolist()], separators=(",", ":")
    ).encode()


def prepare(out: Path, model_dir: Path) -> dict[str, dict[str, Any]]:
    """Bodies, expected labels (onnxruntime on the served artifact) and the baseline's model."""
    import joblib
    import onnxruntime as ort
    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    from inference_service import artifact, data, spec

    ds = data.load(spec.load(ROOT / "data/input/train/iris.toml"))
    x, y = ds.x, ds.y
    lo, hi = x.min(axis=0), x.max(axis=0)
    rng = np.random.default_rng(SEED)
    bodies = {
        "2": ORIGINAL_BODY,
        "1000": records_body(make_rows(PAYLOADS["1000"], rng, lo, hi)),
        "10000": records_body(make_rows(BIG_ROWS, rng, lo, hi)),
    }
    art = artifact.read(model_dir / "iris")
    session = ort.InferenceSession(art.onnx, providers=["CPUExecutionProvider"])
    # The original design pickled a scikit-learn tree: refit the artifact's tree from its card
    # (same data, split and hyperparameters) and refuse to run if it disagrees with the artifact.
    params = art.card["hyperparameters"]
    x_train, _, y_train, _ = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=params["random_state"]
    )
    tree = DecisionTreeClassifier(**params).fit(x_train, y_train)
    joblib.dump(tree, out / "baseline_model.joblib")
    assets: dict[str, dict[str, Any]] = {}
    for name, body in bodies.items():
        rows = np.array([[r[k] for k in "0123"] for r in json.loads(body)], dtype=np.float32)
        labels = session.run(["label"], {"input": rows})[0].tolist()
        if tree.predict(rows).tolist() != labels:
            sys.exit(f"the refitted baseline tree disagrees with {art.path}; retrain the model")
        path = out / f"body_{name}.json"
        path.write_bytes(body)
        compact = json.dumps(labels, separators=(",", ":"))
        needles = {"service": '{"predictions":' + compact, "original": compact}
        for style, needle in needles.items():
            (out / f"expect_{name}_{style}.txt").write_text(needle)
        assets[name] = {"body": body, "path": path, "labels": labels, "bytes": len(body)}
    return assets


# --- processes ------------------------------------------------------------------------------


def pinned(cores: int | str) -> list[str]:
    return ["taskset", "-c", str(cores)] if CORES >= 2 else []


def spawn(server: Server, port: int, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    argv = [a.replace("{port}", str(port)) for a in server.argv]
    with open(log, "ab") as f:
        return subprocess.Popen(
            [*pinned(server.cores), *argv],
            cwd=ROOT,
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """TERM the server's process group, KILL it after 10 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def group_rss_mb(pgid: int) -> tuple[float, float]:
    """Sum of VmRSS over the process group, and the largest single process (the worker)."""
    sizes = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            status = (entry / "status").read_text()
        except (OSError, IndexError, ValueError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(int(line.split()[1]) / 1024)
    return (sum(sizes), max(sizes)) if sizes else (0.0, 0.0)


def group_cpu_s(pgid: int) -> float:
    """User + system CPU seconds used so far by the process group (its threads included)."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def post(
    port: int, body: bytes, timeout: float = 5.0, conn: http.client.HTTPConnection | None = None
) -> tuple[int, bytes]:
    own = conn is None
    c = conn or http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request("POST", "/inference", body, {"Content-Type": "application/json"})
        response = c.getresponse()
        return response.status, response.read()
    finally:
        if own:
            c.close()


def labels_of(answer: bytes, style: str) -> list[str] | None:
    try:
        value = json.loads(answer)
        labels = value if style == "original" else value["predictions"]
    except (ValueError, KeyError, TypeError):
        return None
    return labels if isinstance(labels, list) else None


def cold_start(
    server: Server, port: int, asset: dict[str, Any], log: Path, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], float]:
    """Spawn and poll until the first correct answer; seconds from spawn."""
    t0 = time.perf_counter()
    proc = spawn(server, port, log, env)
    deadline = t0 + 60
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{server.name} exited with {proc.returncode}; see {log}")
        try:
            status, answer = post(port, asset["body"], timeout=2)
            if status == 200 and labels_of(answer, server.answers) == asset["labels"]:
                return proc, time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.002)
    stop(proc)
    sys.exit(f"{server.name} gave no correct answer within 60 s; see {log}")


def wrk(port: int, name: str, style: str, seconds: int, conns: int, out: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "BENCH_BODY": str(out / f"body_{name}.json"),
        "BENCH_EXPECT": str(out / f"expect_{name}_{style}.txt"),
    }
    cmd = [
        *pinned(1),
        "wrk",
        "-t1",
        f"-c{conns}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH / "post.lua"),
        f"http://{HOST}:{port}/inference",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH "):
            result: dict[str, Any] = json.loads(line[6:])
            result["raw"] = done.stdout
            return result
    sys.exit(f"wrk failed: {done.stdout}\n{done.stderr}")


def big_request(
    port: int, asset: dict[str, Any], style: str, budget_s: float = 5.0, most: int = 25
) -> tuple[float, int, bool]:
    """Median ms of sequential 10,000-row requests on one keep-alive connection (bounded)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    ok, times = True, []
    try:
        for _ in range(2):  # warm-up
            post(port, asset["body"], conn=conn)
        end = time.perf_counter() + budget_s
        while len(times) < most and (len(times) < 5 or time.perf_counter() < end):
            t = time.perf_counter()
            status, answer = post(port, asset["body"], conn=conn)
            times.append((time.perf_counter() - t) * 1000)
            ok = ok and status == 200 and labels_of(answer, style) == asset["labels"]
    finally:
        conn.close()
    return statistics.median(times), len(times), ok


# --- one server -----------------------------------------------------------------------------


def bench_server(
    server: Server,
    port: int,
    assets: dict[str, dict[str, Any]],
    args: argparse.Namespace,
    out: Path,
    env: dict[str, str],
) -> tuple[list[Run], Extra]:
    log = out / f"{server.name}.log"
    env = {**env, **dict(server.env)}
    extra = Extra(server.name)
    proc = None
    for i in range(args.spawns):
        proc, seconds = cold_start(server, port, assets["2"], log, env)
        extra.cold_s.append(seconds)
        if i < args.spawns - 1:
            stop(proc)
    assert proc is not None
    cold = statistics.median(extra.cold_s)
    runs = []
    try:
        for name in PAYLOADS:
            wrk(port, name, server.answers, args.warmup, args.connections, out)
            cpu = group_cpu_s(proc.pid)
            result = wrk(port, name, server.answers, args.duration, args.connections, out)
            cpu = group_cpu_s(proc.pid) - cpu
            (out / f"wrk_{server.name}_{name}.txt").write_text(result.pop("raw"))
            status, answer = post(port, assets[name]["body"])
            verified = status == 200 and labels_of(answer, server.answers) == assets[name]["labels"]
            errors = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
            errors += result["mismatches"] + (0 if verified else 1)
            rss, worker = group_rss_mb(proc.pid)
            runs.append(
                Run(
                    server=server.name,
                    payload=name,
                    rps=result["requests"] / (result["duration_us"] / 1e6),
                    p50_ms=result["p50_us"] / 1000,
                    p99_ms=result["p99_us"] / 1000,
                    errors=errors,
                    checked=result["checked"],
                    verified=verified,
                    rss_mb=rss,
                    rss_worker_mb=worker,
                    cold_s=cold,
                    wrk=result,
                    cpu_us=cpu / max(result["requests"], 1) * 1e6,
                )
            )
        extra.big_ms, extra.big_samples, extra.big_ok = big_request(
            port, assets["10000"], server.answers
        )
    finally:
        stop(proc)
    return runs, extra


def main() -> int:
    names = [s.name for s in servers()]
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only", help=f"comma-separated subset of {','.join(names)},protocols (default: all)"
    )
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per payload")
    parser.add_argument("--warmup", type=int, default=2, help="discarded seconds per payload")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--spawns", type=int, default=3, help="cold starts per server (median)")
    parser.add_argument(
        "--model-dir", type=Path, default=Path(os.environ.get("INFERENCE_MODEL_DIR", "models"))
    )
    parser.add_argument(
        "--publish",
        action="store_true",
        help="write docs/performance.png and the table block in docs/performance.md",
    )
    args = parser.parse_args()
    chosen = [s for s in servers() if not args.only or s.name in args.only.split(",")]
    if args.only and (unknown := set(args.only.split(",")) - {*names, "protocols"}):
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    if CORES >= 2:
        os.sched_setaffinity(0, {1})  # the driver's polling and checks stay off the server's core
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = BENCH / "results" / stamp
    out.mkdir(parents=True)
    model_dir = (ROOT / args.model_dir).resolve()
    env = {
        **os.environ,
        "INFERENCE_MODEL_DIR": str(model_dir),
        "MODEL_PATH": str(out / "baseline_model.joblib"),
        "PYTHONUNBUFFERED": "1",
    }
    started = time.perf_counter()
    assets = prepare(out, model_dir)
    runs: list[Run] = []
    extras: list[Extra] = []
    for i, server in enumerate(chosen):
        print(f"[{time.perf_counter() - started:5.0f}s] {server.name}: {server.what}", flush=True)
        r, e = bench_server(server, BASE_PORT + i, assets, args, out, env)
        runs += r
        extras.append(e)
    protocols: list[dict[str, Any]] = []
    if not args.only or "protocols" in args.only.split(","):
        print(f"[{time.perf_counter() - started:5.0f}s] protocols and models", flush=True)
        import protocols as bench_protocols  # bench/protocols.py

        protocols = bench_protocols.measure(model_dir, args, out)
    base = {r.payload: r.rps for r in runs if r.server == "baseline"}
    for r in runs:
        r.ratio = r.rps / base[r.payload] if base.get(r.payload) else 0.0

    from report import Report, render  # bench/ is the script directory, so on sys.path

    report = Report(
        stamp=stamp,
        settings={
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "spawns": args.spawns,
            "pinned": bool(pinned(0)),
            "bytes": {k: v["bytes"] for k, v in assets.items()},
            "elapsed_s": round(time.perf_counter() - started, 1),
            "servers": {s.name: s.what for s in chosen},
        },
        runs=[asdict(r) for r in runs],
        extras=[asdict(e) for e in extras],
        protocols=protocols,
    )
    (out / "results.json").write_text(json.dumps(asdict(report), indent=2))
    text = render(report, out, publish=args.publish)
    print(text)
    print(f"results: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
