"""`make soak`: steady load at ~70 % of the measured peak for 60 s, then 3x overload for 10 s.

One worker (`inference-service serve`, INFERENCE_WORKERS=1) pinned to core 0 with taskset; wrk
on core 1, 127.0.0.1 only. Every phase is bounded in time. Phases:

1. peak: 2 s warm-up, then 5 s of wrk -c16 with no think time and the original 2-record body.
2. steady: 60 s at ~70 % of the peak. wrk has no fixed-rate mode (wrk2 is not packaged), so a Lua
   `delay()` paces each of 32 connections: per connection one request every 32/rate seconds,
   minus the time the request itself takes. A 5 s calibration run measures that time once.
   Whole milliseconds are drawn at random around the fractional target so the mean is exact.
   Criteria: no errors (socket errors, timeouts, non-200, wrong labels), RSS growth < 5 %.
3. overload: 10 s of 256 connections with no think time, paced to 3x the peak; as the server
   cannot keep up, every connection always has a request waiting. wrk --timeout 5s counts any
   request that hangs. A thread probes GET /readyz every 0.5 s (2 s timeout) during the run.
   Criteria: every probe answered, no hung request, nothing but 200 (or 503 with Retry-After).
4. recovery: single requests back to back for 5 s after the overload stops. Criterion: their
   p50 is within 2x (or +1 ms) of the p50 measured the same way before any load.

The figures go to stdout and between the soak markers in docs/reliability.md. Exit status 1
when a criterion fails.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference_service.smoke import ORIGINAL_PAYLOAD

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs/reliability.md"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
BODY = json.dumps(ORIGINAL_PAYLOAD)
EXPECT = '"predictions":["virginica","versicolor"]'

LUA = r"""
wrk.method = "POST"
wrk.body = os.getenv("SOAK_BODY")
wrk.headers["Content-Type"] = "application/json"
local expect = os.getenv("SOAK_EXPECT")
local interval = tonumber(os.getenv("SOAK_INTERVAL_MS") or "0")
ok, rejected, unpaced, bad = 0, 0, 0, 0

function init(args)
  math.randomseed(os.time() * 100 + (id or 0))
end

if interval > 0 then
  function delay()
    local whole = math.floor(interval)
    if math.random() < interval - whole then return whole + 1 end
    return whole
  end
end

function response(status, headers, body)
  if status == 200 and string.find(body, expect, 1, true) then
    ok = ok + 1
  elseif status == 503 and headers["Retry-After"] then
    rejected = rejected + 1
  else
    bad = bad + 1
  end
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function done(summary, latency, requests)
  local o, r, b = 0, 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok"); r = r + t:get("rejected"); b = b + t:get("bad")
  end
  local e = summary.errors
  io.write(string.format(
    'SOAK {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"ok":%d,"rejected":%d,"bad":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    o, r, b, latency:percentile(50), latency:percentile(99), latency.max, latency.mean))
end
"""


@dataclass
class Run:
    """What one wrk run measured."""

    requests: int
    seconds: float
    socket_errors: int
    timeouts: int
    ok: int
    rejected: int
    bad: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def errors(self) -> int:
        return self.socket_errors + self.timeouts + self.bad


@dataclass
class Probes:
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)  # noqa: T201


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cores() -> tuple[list[str], list[str]]:
    """taskset prefixes for the server (core 0) and the load generator (core 1)."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", "0"], ["taskset", "-c", "1"]
    log("no taskset or one core: server and wrk share the cores")
    return [], []


def other_load_generators() -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid=,comm="], capture_output=True, text=True, check=True)
    return [line.strip() for line in ps.stdout.splitlines() if line.split()[-1] in ("wrk", "wrk2")]


def wait_for_quiet_machine(limit: float = 300) -> None:
    """Another benchmark would share the two cores: wait for it (bounded), then give up."""
    deadline = time.monotonic() + limit
    while others := other_load_generators():
        if time.monotonic() > deadline:
            sys.exit(f"another load generator is still running after {limit:.0f} s: {others}")
        log(f"waiting for another load generator to finish: {others}")
        time.sleep(10)


def status(pid: int, key: str) -> int:
    """A /proc status figure (VmRSS in kB, Threads) summed over `pid` and its children
    (granian's main process and its worker)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(f"{key}:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def rss_kb(pid: int) -> int:
    return status(pid, "VmRSS")


def wrk(
    url: str,
    lua: Path,
    prefix: list[str],
    connections: int,
    seconds: int,
    interval_ms: float = 0.0,
    threads: int = 1,
) -> Run:
    env = {**os.environ, "SOAK_BODY": BODY, "SOAK_EXPECT": EXPECT}
    env["SOAK_INTERVAL_MS"] = f"{interval_ms:.4f}"
    command = [
        *prefix,
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(lua),
        f"{url}/inference",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=seconds + 30, check=False
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("SOAK ")), None)
    if done.returncode != 0 or line is None:
        sys.exit(f"wrk failed ({done.returncode}): {done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    r: dict[str, Any] = json.loads(line.removeprefix("SOAK "))
    return Run(
        requests=r["requests"],
        seconds=r["duration_us"] / 1e6,
        socket_errors=r["connect"] + r["read"] + r["write"],
        timeouts=r["timeout"],
        ok=r["ok"],
        rejected=r["rejected"],
        bad=r["bad"],
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        max_ms=r["max_us"] / 1000,
        mean_ms=r["mean_us"] / 1000,
    )


def single_requests(port: int, seconds: float) -> list[tuple[float, float]]:
    """(seconds since the start, latency ms) of back-to-back single requests on one
    keep-alive connection; failed requests are left out (and reconnect)."""
    latencies: list[tuple[float, float]] = []
    began = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"Content-Type": "application/json"}
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                conn.request("POST", "/inference", body=BODY, headers=headers)
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                continue
            if response.status == 200 and EXPECT.encode() in body:
                latencies.append((start - began, (time.perf_counter() - start) * 1000))
    finally:
        conn.close()
    return latencies


def probe(port: int, stop: threading.Event, result: Probes) -> None:
    """GET /readyz every 0.5 s on a fresh connection, as a load balancer would."""
    while not stop.is_set():
        start = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                result.latencies_ms.append((time.perf_counter() - start) * 1000)
            else:
                result.failures.append(f"status {status}")
        except (OSError, http.client.HTTPException) as exc:
            result.failures.append(type(exc).__name__)
        stop.wait(max(0.0, 0.5 - (time.perf_counter() - start)))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def start_server(
    model_dir: Path, port: int, prefix: list[str], out: Path
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_")}
    env |= {
        "INFERENCE_MODEL_DIR": str(model_dir),
        "INFERENCE_PORT": str(port),
        "INFERENCE_WORKERS": "1",
    }
    cli = ROOT / ".venv/bin/inference-service"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [*prefix, str(cli), "serve"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        if proc.poll() is not None:
            sys.exit(f"the server exited: {out.read_text()[-2000:]}")
        time.sleep(0.1)
    proc.kill()
    sys.exit("the server did not become ready in 30 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")
    model_dir = Path(os.environ.get("INFERENCE_MODEL_DIR", ROOT / "models"))
    if not (model_dir / "iris" / "current").exists():
        sys.exit(f"no iris model in {model_dir}: run `make models`")
    wait_for_quiet_machine()
    server_cores, load_cores = cores()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    lua = work / "soak.lua"
    lua.write_text(LUA)
    server_log = work / "server.log"
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    proc = start_server(model_dir, port, server_cores, server_log)
    failures: list[str] = []
    try:
        idle = [ms for _, ms in single_requests(port, 3)]
        idle_p50 = statistics.median(idle)
        log(f"idle single requests: p50 {idle_p50:.2f} ms over {len(idle)}")

        wrk(url, lua, load_cores, 16, 2)  # warm-up, discarded
        peak = wrk(url, lua, load_cores, 16, 5)
        log(f"peak: {peak.rate:,.0f} req/s, p99 {peak.p99_ms:.2f} ms, errors {peak.errors}")

        connections = 32
        target = 0.7 * peak.rate
        service_ms = 1000 / peak.rate  # a first guess of the time one request takes
        interval = max(0.0, connections * 1000 / target - service_ms)
        for _ in range(2):
            calibration = wrk(url, lua, load_cores, connections, 4, interval)
            # rate = connections / (interval + per-request time): solve for that time.
            per_request_ms = max(0.0, connections * 1000 / calibration.rate - interval)
            interval = max(0.0, connections * 1000 / target - per_request_ms)
            log(f"calibration: {calibration.rate:,.0f} req/s; next interval {interval:.2f} ms")

        rss_start, threads_steady = rss_kb(proc.pid), status(proc.pid, "Threads")
        rss_samples: list[int] = []
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.wait(5):
                rss_samples.append(rss_kb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        steady = wrk(url, lua, load_cores, connections, 60, interval)
        sampling.set()
        sampler.join()
        rss_end = rss_kb(proc.pid)
        growth = (rss_end - rss_start) / rss_start * 100
        log(
            f"steady: {steady.rate:,.0f} req/s ({steady.rate / peak.rate:.0%} of peak), "
            f"p99 {steady.p99_ms:.2f} ms, errors {steady.errors}, RSS {rss_start / 1024:.1f} -> "
            f"{rss_end / 1024:.1f} MB ({growth:+.1f} %)"
        )
        if steady.errors or steady.rejected:
            failures.append(f"steady load had {steady.errors + steady.rejected} errors")
        if growth >= 5:
            failures.append(f"RSS grew {growth:.1f} % during the steady load")

        probes = Probes()
        stop = threading.Event()
        prober = threading.Thread(target=probe, args=(port, stop, probes), daemon=True)
        prober.start()
        overload_connections = 256
        overload_interval = overload_connections * 1000 / (3 * peak.rate)
        overload = wrk(url, lua, load_cores, overload_connections, 10, overload_interval, threads=2)
        stop.set()
        prober.join()
        timed = single_requests(port, 5)
        after = [ms for _, ms in timed]
        after_p50 = statistics.median(after) if after else float("inf")
        first_second = [ms for at, ms in timed if at < 1]
        rss_after, threads_after = rss_kb(proc.pid), status(proc.pid, "Threads")
        # granian ends blocking threads idle for 30 s: what is left once they are gone.
        time.sleep(35)
        rss_settled, threads_settled = rss_kb(proc.pid), status(proc.pid, "Threads")
        log(
            f"RSS after the overload {rss_after / 1024:.1f} MB ({threads_after} threads), 35 s "
            f"later {rss_settled / 1024:.1f} MB ({threads_settled} threads)"
        )
        log(
            f"overload: {overload.rate:,.0f} req/s served, p99 {overload.p99_ms:.1f} ms, "
            f"timeouts {overload.timeouts}, socket errors {overload.socket_errors}, "
            f"503 {overload.rejected}, other {overload.bad}; probes {len(probes.latencies_ms)} ok "
            f"/ {len(probes.failures)} failed; after: p50 {after_p50:.2f} ms"
        )
        if probes.failures:
            failures.append(f"/readyz failed during the overload: {probes.failures[:5]}")
        if overload.timeouts or overload.socket_errors or overload.bad:
            failures.append("requests hung, failed or got a wrong answer during the overload")
        if after_p50 > max(2 * idle_p50, idle_p50 + 1):
            failures.append(f"p50 {after_p50:.2f} ms after the overload vs {idle_p50:.2f} ms idle")
        if proc.poll() is not None:
            failures.append("the server exited")
        if "unhandled error" in server_log.read_text(errors="replace"):
            failures.append("the server logged an unhandled error")
    finally:
        stop_server(proc)
        shutil.rmtree(work, ignore_errors=True)

    report = render(
        peak=peak,
        calibration_interval=interval,
        steady=steady,
        rss=(rss_start, rss_end, rss_samples, rss_after, rss_settled),
        threads=(threads_steady, threads_after, threads_settled),
        overload=overload,
        overload_connections=overload_connections,
        probes=probes,
        idle=idle,
        after=after,
        first_second=first_second,
        load_before=load_before,
        elapsed=time.monotonic() - started,
        failures=failures,
    )
    print(report)  # noqa: T201
    write_doc(report)
    for failure in failures:
        log(f"FAIL: {failure}")
    return 1 if failures else 0


def render(
    *,
    peak: Run,
    calibration_interval: float,
    steady: Run,
    rss: tuple[int, int, list[int], int, int],
    threads: tuple[int, int, int],
    overload: Run,
    overload_connections: int,
    probes: Probes,
    idle: list[float],
    after: list[float],
    first_second: list[float],
    load_before: float,
    elapsed: float,
    failures: list[str],
) -> str:
    rss_start, rss_end, samples, rss_after, rss_settled = rss
    mb = [f"{v / 1024:.1f}" for v in [rss_start, *samples, rss_end]]
    run_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = [
        ("peak (wrk -c16, 5 s)", peak, "-"),
        (
            f"steady (-c32, paced, 60 s, delay {calibration_interval:.1f} ms)",
            steady,
            f"{steady.rate / peak.rate:.0%}",
        ),
        (f"overload (-c{overload_connections}, 10 s)", overload, "3x offered"),
    ]
    lines = [
        f"Run {run_at}, {elapsed:.0f} s in all; one worker on core 0, wrk on core 1, "
        f"2-record body; load average before the run {load_before:.2f}.",
        "",
        "| phase | req/s | of peak | p50 ms | p99 ms | max ms | errors | timeouts | 503 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, run, share in rows:
        lines.append(
            f"| {name} | {run.rate:,.0f} | {share} | {run.p50_ms:.2f} | {run.p99_ms:.2f} | "
            f"{run.max_ms:.1f} | {run.socket_errors + run.bad} | {run.timeouts} | "
            f"{run.rejected} |"
        )
    growth = (rss_end - rss_start) / rss_start * 100
    lines += [
        "",
        f"- Steady load: {steady.requests:,} requests, {steady.errors} errors; RSS (server and "
        f"worker) {rss_start / 1024:.1f} MB at the start, {rss_end / 1024:.1f} MB at the end "
        f"({growth:+.1f} %); every 5 s: {' / '.join(mb)} MB.",
        f"- Overload: {overload.requests:,} requests served in 10 s, none timed out (wrk "
        f"--timeout 5s: {overload.timeouts}); /readyz probed every 0.5 s: "
        f"{len(probes.latencies_ms)} answered, {len(probes.failures)} failed, p50 "
        f"{percentile(probes.latencies_ms, 50):.1f} ms, max "
        f"{max(probes.latencies_ms, default=float('nan')):.1f} ms.",
        f"- Memory and threads (server and worker): {rss_start / 1024:.1f} MB / {threads[0]} "
        f"threads before the steady load, {rss_after / 1024:.1f} MB / {threads[1]} threads right "
        f"after the overload (granian grows its blocking-thread pool with concurrency), "
        f"{rss_settled / 1024:.1f} MB / {threads[2]} threads 35 s later.",
        f"- Recovery: single back-to-back requests, p50 {statistics.median(idle):.2f} ms before "
        f"any load ({len(idle)} requests); in the 5 s after the overload p50 "
        f"{statistics.median(after) if after else float('nan'):.2f} ms ({len(after)} requests), "
        f"first second p50 {statistics.median(first_second) if first_second else float('nan'):.2f}"
        f" ms.",
        f"- Verdict: {'PASS' if not failures else 'FAIL: ' + '; '.join(failures)}.",
    ]
    return "\n".join(lines)


def write_doc(report: str) -> None:
    if not DOC.exists():
        log(f"{DOC} is missing: figures printed only")
        return
    text = DOC.read_text()
    if BEGIN not in text or END not in text:
        log(f"{DOC} has no {BEGIN} ... {END} block: figures printed only")
        return
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{BEGIN}\n{report}\n{END}{tail}")
    log(f"figures written to {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
