"""The daemon, measured as a whole process (`watcher run`) against local servers.

    python benchmarks/daemon.py latency [--trials 20] [--interval 10]
    python benchmarks/daemon.py memory  [--cycles 1000] [--feeds 200]
    python benchmarks/daemon.py cpu     [--feeds 200] [--interval 10] [--seconds 60] [--runs 3]

latency: 200 feeds polled every --interval seconds, `group_wait: 0`, a local webhook receiver.
  At random moments a matching item is published into a random feed; the time from
  publication to the message reaching the receiver is measured per trial (p50, p95, max).
memory: --feeds feeds polled every second (conditional GETs, as in production), for --cycles
  cycles; the daemon's RSS is sampled every 10 cycles (start, peak, end, and growth over the
  second half).
cpu: CPU per poll of the daemon against `watcher run --once --all`, on the same warm database
  (every feed answers 304). The daemon polls --feeds feeds every --interval seconds; after the
  baseline polls, its CPU (user+sys from /proc) over --seconds is divided by the polls recorded
  meanwhile (the sources' `ok_polls`). `--once` is the difference between a cycle of all feeds
  and a cycle of one, divided by the feeds less one (start-up cancels out). Median of --runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

ROOT = Path(__file__).resolve().parent.parent


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    feeds: ClassVar[dict[str, bytes]] = {}
    received: ClassVar[list[tuple[float, dict]]] = []
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = self.feeds.get(self.path, b"")
        etag = f'"{hash(body)}"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}")
        with self.lock:
            self.received.append((time.time(), payload))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


def rss(n: int, titles: list[str]) -> bytes:
    now = format_datetime(datetime.now(UTC))
    items = "".join(
        f"<item><title>{t}</title><link>https://outlet{n}.example/{abs(hash(t))}</link>"
        f"<pubDate>{now}</pubDate></item>"
        for t in titles
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>F{n}</title>{items}'
        "</channel></rss>"
    ).encode()


def start(feeds: int, interval: str, directory: Path) -> tuple[ThreadingHTTPServer, Path]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    for n in range(feeds):
        Handler.feeds[f"/f{n}"] = rss(n, [f"Weather in city {n} on day {d}" for d in range(5)])
    lines = ["sources:"] + [
        f"  - {{id: f{n}, kind: feed, url: 'http://127.0.0.1:{port}/f{n}', interval: {interval},"
        " lang: en}"
        for n in range(feeds)
    ]
    lines += [
        "concepts:",
        "  nk_people: {en: [north korean*, defector*]}",
        "  sent_back: {en: [repatriat*, sent back]}",
        "rules:",
        "  - {id: r, event: forced_repatriation, severity: high, all_of: [nk_people, sent_back]}",
        "channels:",
        f"  - {{id: hook, url: 'json://127.0.0.1:{port}/hook'}}",
        "routes:",
        "  - {channels: [hook], group_wait: 0s}",
        f"settings: {{state_dir: '{directory}', jitter: 0.1, allow_private_addresses: true}}",
    ]
    path = directory / "sources.yaml"
    path.write_text("\n".join(lines) + "\n")
    return server, path


def daemon(config: Path, directory: Path) -> subprocess.Popen[str]:
    db = f"sqlite:///{directory / 'bench.db'}"
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "watcher",
            "--config",
            str(config),
            "--db",
            db,
            "--log-level",
            "warning",
            "run",
            "--metrics-address",
            "off",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def latency(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        _server, config = start(200, f"{args.interval}s", directory)
        proc = daemon(config, directory)
        time.sleep(args.interval * 1.5 + 3)  # every feed's baseline poll
        delays = []
        rng = random.Random(1)
        for trial in range(args.trials):
            time.sleep(rng.uniform(0, args.interval))
            n = rng.randrange(200)
            # counts far apart and no place: each trial is a story of its own
            title = f"Trial {trial}: police repatriate {10 * 2**trial} North Korean defectors"
            before = len(Handler.received)
            published = time.time()
            Handler.feeds[f"/f{n}"] = rss(n, [title])
            deadline = published + args.interval * 3 + 10
            while len(Handler.received) == before and time.time() < deadline:
                time.sleep(0.01)
            if len(Handler.received) == before:
                print(f"  trial {trial}: no alert within {deadline - published:.0f}s")
                continue
            delays.append(Handler.received[-1][0] - published)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    delays.sort()
    p95 = delays[max(0, round(0.95 * len(delays)) - 1)]
    print(
        f"time to alert, 200 feeds, interval {args.interval}s, group_wait 0, "
        f"{len(delays)}/{args.trials} trials"
    )
    print(
        f"  p50 {statistics.median(delays):.2f} s  p95 {p95:.2f} s  max {delays[-1]:.2f} s  "
        f"(target p95 < {args.interval + 2} s)"
    )


def memory(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        _server, config = start(args.feeds, "1s", directory)
        proc = daemon(config, directory)
        samples = []
        started = time.time()
        for cycle in range(0, args.cycles + 1, 10):
            time.sleep(max(0.0, started + cycle - time.time()))
            samples.append((cycle, rss_mib(proc.pid)))
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            print(err[-2000:], file=sys.stderr)
    values = [m for _, m in samples]
    half = len(values) // 2
    growth = statistics.mean(values[-10:]) - statistics.mean(values[half : half + 10])
    print(f"daemon memory, {args.feeds} feeds polled every second, {args.cycles} cycles")
    print(
        f"  RSS start {values[1]:.0f} MiB  peak {max(values):.0f} MiB  end {values[-1]:.0f} MiB  "
        f"growth over the second half {growth:+.1f} MiB  (target peak < 150 MiB, flat)"
    )


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ok_polls(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT coalesce(sum(ok_polls), 0) FROM sources").fetchone()[0])


def once_cpu(config: Path, directory: Path) -> float:
    watcher = [sys.executable, "-m", "watcher", "--config", str(config)]
    watcher += ["--db", f"sqlite:///{directory / 'bench.db'}", "--log-level", "warning"]
    proc = subprocess.Popen([*watcher, "run", "--once", "--all"], cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"watcher run --once failed ({status})")
    return usage.ru_utime + usage.ru_stime


def cpu(args: argparse.Namespace) -> None:
    daemon_rates, once_rates = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp)
            server, config = start(args.feeds, f"{args.interval}s", directory)
            proc = daemon(config, directory)
            time.sleep(args.interval * 1.5 + 5)  # every feed's baseline poll, then warm ones
            cpu0, polls0 = cpu_seconds(proc.pid), ok_polls(directory / "bench.db")
            time.sleep(args.seconds)
            cpu1, polls1 = cpu_seconds(proc.pid), ok_polls(directory / "bench.db")
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)
            daemon_rates.append((cpu1 - cpu0) / max(1, polls1 - polls0) * 1000)
            one = directory / "one.yaml"
            text = config.read_text().splitlines()
            keep = [line for line in text if not line.startswith("  - {id: f") or "id: f0," in line]
            one.write_text("\n".join(keep) + "\n")
            all_feeds = statistics.median(once_cpu(config, directory) for _ in range(3))
            single = statistics.median(once_cpu(one, directory) for _ in range(3))
            once_rates.append((all_feeds - single) / (args.feeds - 1) * 1000)
            server.shutdown()
    d, o = statistics.median(daemon_rates), statistics.median(once_rates)
    print(
        f"CPU per warm poll (304), {args.feeds} feeds, median of {args.runs}: daemon {d:.2f} ms, "
        f"--once {o:.2f} ms: {d / o:.2f}x (target <= 1.2x)"
    )
    print(
        f"  daemon runs {', '.join(f'{r:.2f}' for r in daemon_rates)} ms; "
        f"--once runs {', '.join(f'{r:.2f}' for r in once_rates)} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--trials", type=int, default=20)
    lat.add_argument("--interval", type=int, default=10)
    mem = sub.add_parser("memory")
    mem.add_argument("--cycles", type=int, default=1000)
    mem.add_argument("--feeds", type=int, default=200)
    use = sub.add_parser("cpu")
    use.add_argument("--feeds", type=int, default=200)
    use.add_argument("--interval", type=int, default=10)
    use.add_argument("--seconds", type=int, default=60)
    use.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    os.environ.pop("WATCHER_CRASH_AT", None)
    {"latency": latency, "memory": memory, "cpu": cpu}[args.what](args)


if __name__ == "__main__":
    main()
