"""Benchmark: `watcher run --once --all` over 200 local feeds, as a whole process.

--feeds (default 200) feeds × 30 items, 100 ms latency each, on 50 loopback addresses
(127.0.0.2–127.0.0.51) so the per-host limit applies as with real outlets. Measures a cold
cycle (empty database: 30 items per feed parsed, normalised, stored) and a warm cycle (every
feed 304).
Prints wall time, CPU time (user+sys of the watcher process and its parsing workers), peak
RSS of the main process (sampled every 20 ms) and of the process tree as the kernel reports it:
median of N runs. `--db both` measures SQLite and PostgreSQL in the same run, alternating run
by run so that the machine's load falls on both alike, and prints the ratio of their cold
cycles (the issue's "PostgreSQL from a cold start": a fresh database whose first cycle stores
30,000 items at 1,000 feeds). For PostgreSQL it also prints the CPU of the server backends
that served the cycle (read from /proc: the server runs on this machine) and, from the
server's statistics, the sequential and index scans of the busiest tables after the cold
cycle. `--cold-only` skips the warm cycle. The load average before and after is printed;
benchmarks/urlwatch.py compares the warm cycle with urlwatch.

    python benchmarks/poll.py [--runs 5] [--feeds 200] [--db sqlite|postgres|both] [--cold-only]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

FEEDS, ITEMS, HOSTS, LATENCY = 200, 30, 50, 0.1

#: The environment of the measured processes: Python modules read from bytecode, as in an
#: operator's install (pip compiles them when it installs the wheel). A checkout run in place
#: with PYTHONDONTWRITEBYTECODE set (this machine sets it) would compile every watcher module
#: from source in every process: ~0.15 s of CPU a run that no installed copy pays. The bytecode
#: goes to a cache of the benchmarks' own, never into the checkout.
INSTALLED = {
    **{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    "PYTHONPYCACHEPREFIX": str(Path.home() / ".cache" / "watcher-bench" / "pycache"),
}


def feed_body(n: int) -> bytes:
    items = []
    for i in range(ITEMS):
        items.append(
            f"<item><title>Feed {n} story {i}: North Korean escapees held in Dandong</title>"
            f"<link>https://outlet{n % HOSTS}.example/news/{n}/{i}?utm_source=rss</link>"
            f"<guid>https://outlet{n % HOSTS}.example/news/{n}/{i}</guid>"
            f"<pubDate>{formatdate(1_790_000_000 - i * 3600, usegmt=True)}</pubDate>"
            f"<description>&lt;p&gt;Lead paragraph {i} of feed {n}, with some words about "
            f"the border, detention and repatriation.&lt;/p&gt;</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        f"<title>Feed {n}</title><link>https://outlet{n}.example/</link>{''.join(items)}"
        "</channel></rss>"
    ).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: ClassVar[dict[str, bytes]] = {}
    #: Status → answers given (benchmarks/urlwatch.py counts each tool's).
    statuses: ClassVar[Counter[int]] = Counter()

    def log_message(self, *args: object) -> None:
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        self.statuses[code] += 1
        super().send_response(code, message)

    def do_GET(self) -> None:
        time.sleep(LATENCY)
        body = self.bodies.get(self.path)
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        etag = f'"{hash(body) & 0xFFFFFFFF:x}"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml; charset=utf-8")
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start_servers() -> tuple[list[ThreadingHTTPServer], list[str]]:
    servers, urls = [], []
    for h in range(HOSTS):
        httpd = ThreadingHTTPServer((f"127.0.0.{h + 2}", 0), Handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
    for n in range(FEEDS):
        httpd = servers[n % HOSTS]
        path = f"/feed/{n}.xml"
        Handler.bodies[path] = feed_body(n)
        urls.append(f"http://{httpd.server_address[0]}:{httpd.server_address[1]}{path}")
    return servers, urls


def write_config(directory: Path, urls: list[str]) -> Path:
    lines = [  # the feeds are served on loopback
        "settings: {contact: 'mailto:bench@example.org', allow_private_addresses: true}",
        "sources:",
    ]
    for n, url in enumerate(urls):
        lines.append(f"  - {{id: feed-{n}, kind: feed, url: '{url}', interval: 10m, lang: en}}")
    path = directory / "sources.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def run_once(config: Path, db: str) -> tuple[float, float, float, float, float]:
    """(wall s, cpu s, peak main RSS MiB, peak RSS of the tree MiB, server cpu s) of one
    `watcher run --once --all` process; server cpu: PostgreSQL's backends serving it (0 on
    SQLite, whose work is in the process)."""
    watcher = [
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
        "--once",
        "--all",
    ]
    started = time.perf_counter()
    proc = subprocess.Popen(
        watcher, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=INSTALLED
    )
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss_mib(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    backends = BackendCpu(db) if db.startswith("postgresql") else None
    err = proc.stderr.read().decode() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    server = backends.stop() if backends else 0.0
    if status != 0:
        raise SystemExit(f"watcher failed ({status}): {err[-2000:]}")
    if "WARNING" in err or "ERROR" in err:
        print(err[-1000:], file=sys.stderr)
    return wall, usage.ru_utime + usage.ru_stime, peak[0], usage.ru_maxrss / 1024, server


class BackendCpu:
    """CPU (user+sys) of the PostgreSQL backends serving one benchmark database, told by its
    `application_name` and read from /proc every 50 ms while they live (the server is on this
    machine): what a PostgreSQL cycle costs beyond the watcher process."""

    def __init__(self, db: str) -> None:
        from urllib.parse import parse_qs, urlsplit

        from sqlalchemy import create_engine

        self.name = parse_qs(urlsplit(db).query)["application_name"][0]
        self.engine = create_engine(db.split("?", 1)[0])
        self.ticks: dict[int, int] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        from sqlalchemy import text

        query = text("SELECT pid FROM pg_stat_activity WHERE application_name = :n")
        with self.engine.connect() as conn:
            while not self.done.wait(0.05):
                for pid in conn.execute(query, {"n": self.name}).scalars():
                    try:
                        with open(f"/proc/{pid}/stat") as f:
                            fields = f.read().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    self.ticks[pid] = int(fields[11]) + int(fields[12])
                conn.rollback()

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        self.engine.dispose()
        return sum(self.ticks.values()) / os.sysconf("SC_CLK_TCK")


def table_scans(db: str) -> list[tuple[str, int, int, int, int]]:
    """(table, sequential scans, rows they read, index scans, live rows) of the benchmark
    schema's busiest tables, from PostgreSQL's statistics."""
    from sqlalchemy import create_engine, text

    engine = create_engine(db)
    query = text(
        "SELECT relname, seq_scan, seq_tup_read, coalesce(idx_scan, 0), n_live_tup "
        "FROM pg_stat_user_tables WHERE schemaname = current_schema() "
        "AND seq_scan + coalesce(idx_scan, 0) > 0 ORDER BY seq_tup_read DESC, relname"
    )
    with engine.connect() as conn:
        found = [
            (str(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in conn.execute(query)
        ]
    engine.dispose()
    return found


def fresh_db(kind: str, directory: Path, n: int) -> str:
    if kind == "sqlite":
        return f"sqlite:///{directory / f'bench-{n}.db'}"
    from sqlalchemy import create_engine, text

    url = os.environ.get(
        "WATCHER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    schema = f"bench_{os.getpid()}_{n}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    SCHEMAS.append(schema)
    return f"{url}?options=-csearch_path%3D{schema}&application_name={schema}"


#: The PostgreSQL schemas this run made, dropped at its end.
SCHEMAS: list[str] = []


def drop_schemas() -> None:
    if not SCHEMAS:
        return
    from sqlalchemy import create_engine, text

    url = os.environ.get(
        "WATCHER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    engine = create_engine(url)
    with engine.begin() as conn:
        for schema in SCHEMAS:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def measure(kind: str, config: Path, directory: Path, n: int, warm_too: bool) -> dict:
    """Run `n` of `kind`: a cold cycle on a fresh database, then (`warm_too`) a warm one."""
    db = fresh_db(kind, directory, n)
    # Migrations are applied up front (as `make run` does) so both cycles measure the
    # poll, not the first-start schema creation.
    subprocess.run(
        [sys.executable, "-m", "watcher", "--config", str(config), "--db", db, "db", "upgrade"],
        check=True,
        capture_output=True,
    )
    found = {"cold": [run_once(config, db)], "warm": []}
    if kind == "postgres":
        SCANS[:] = table_scans(db)
    if warm_too:
        found["warm"].append(run_once(config, db))
    return found


#: PostgreSQL's table statistics after the last cold cycle (`table_scans`).
SCANS: list[tuple[str, int, int, int, int]] = []


def main() -> None:
    global FEEDS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--feeds", type=int, default=FEEDS)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--cold-only", action="store_true")
    args = parser.parse_args()
    FEEDS = args.feeds
    _servers, urls = start_servers()
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results: dict[str, dict[str, list]] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        config = write_config(directory, urls)
        try:
            # The kinds alternate run by run, so that a change in the machine's load
            # falls on both alike.
            for n in range(args.runs):
                for kind in kinds:
                    found = measure(kind, config, directory, n, not args.cold_only)
                    for name, cycles in found.items():
                        results.setdefault(kind, {}).setdefault(name, []).extend(cycles)
        finally:
            drop_schemas()
    print(
        f"watcher run --once --all: {FEEDS} feeds x {ITEMS} items, {HOSTS} hosts, "
        f"{LATENCY * 1000:.0f} ms latency, median of {args.runs}; load average "
        f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after"
    )
    for kind in kinds:
        for name, runs in results[kind].items():
            if not runs:
                continue
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            main_rss = statistics.median(r[2] for r in runs)
            tree_rss = statistics.median(r[3] for r in runs)
            spread = f"wall {min(r[0] for r in runs):.2f}-{max(r[0] for r in runs):.2f}"
            server = statistics.median(r[4] for r in runs)
            print(
                f"  {kind:8s} {name}: wall {wall:.2f} s  cpu {cpu:.2f} s  "
                + (f"server cpu {server:.2f} s  " if kind == "postgres" else "")
                + f"peak RSS main {main_rss:.0f} MiB (largest process {tree_rss:.0f} MiB)  "
                f"({spread})"
            )
    if len(kinds) == 2:
        pg, lite = (statistics.median(r[0] for r in results[k]["cold"]) for k in kinds[::-1])
        pairs = zip(results["postgres"]["cold"], results["sqlite"]["cold"], strict=True)
        each = ", ".join(f"{p[0] / s[0]:.2f}x" for p, s in pairs)
        print(
            f"  cold cycle, PostgreSQL / SQLite wall: {pg / lite:.2f}x (target <= 1.5x; "
            f"run by run {each})"
        )
    if SCANS:
        print(
            "  PostgreSQL after the (last) cold cycle: "
            "table, seq scans, rows they read, index scans"
        )
        for name, seq, read, idx, _live in SCANS[:6]:
            print(f"    {name:16s} {seq:6d} {read:10d} {idx:8d}")


if __name__ == "__main__":
    main()
