"""Peak memory with a hostile set of sources, through `watcher run --once` (parse workers on).

    python benchmarks/hostile.py [--copies 2]

Every recorded ill-formed and edge-case feed in tests/fixtures (the feedparser suite and the
format fixtures), plus generated hostile bodies (a 9.8 MB HTML listing, a 9.7 MB feed of
9,500 items, an entity-expansion feed, a deeply nested document, an invalid-UTF-8 Korean
feed), each served --copies times, all polled in one cycle. The tree's PSS (the run and its
parse workers, shared pages counted once) is sampled every 50 ms; the figure is its peak,
with the cycle's wall time and how many warnings were logged (a failure is a clear
per-source error, never a lost cycle).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def hostile_bodies() -> dict[str, tuple[str, bytes]]:
    """name -> (source kind, body)."""
    rows = "".join(
        f'<li class="item"><a href="/n/{i}">North Korean defectors report {i}</a>'
        f"<p>{'words ' * 40}</p></li>"
        for i in range(30_000)
    )
    items = "".join(
        f"<item><title>Report {i} on North Korean defectors</title>"
        f"<link>https://e.org/{i}</link><description>{'text ' * 180}</description></item>"
        for i in range(9_500)
    )
    lol = '<!ENTITY l0 "lol">' + "".join(
        f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 9)
    )
    return {
        "big-listing": ("html", f"<html><body><ul>{rows}</ul></body></html>".encode()),
        "big-feed": ("feed", f'<rss version="2.0"><channel>{items}</channel></rss>'.encode()),
        "entities": (
            "feed",
            f'<?xml version="1.0"?><!DOCTYPE r [{lol}]><rss><channel><item><title>&l8;'
            "</title></item></channel></rss>".encode(),
        ),
        "nested": ("feed", b"<rss>" + b"<a>" * 200_000 + b"</rss>"),
        "bad-utf8": (
            "feed",
            b'<?xml version="1.0" encoding="utf-8"?><rss><channel><item><title>'
            + "탈북민 강제북송".encode()
            + b"\xff\xfe"
            + b"</title></item></channel></rss>",
        ),
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: ClassVar[dict[str, bytes]] = {}

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = self.bodies.get(self.path.split("?")[0], b"")
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("VmRSS:")) / 1024
    except (OSError, StopIteration):
        return 0.0


def tree_pss_mib(pid: int) -> float:
    """The proportional set size of the process and its descendants: shared pages (a forked
    worker shares most of its parent's) counted once, split between their sharers."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                total += next(int(x.split()[1]) for x in f if x.startswith("Pss:"))
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    pids += [int(c) for c in f.read().split()]
        except (OSError, StopIteration):
            continue
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=2)
    args = parser.parse_args()
    sources: list[tuple[str, str]] = []
    files = sorted(
        p for p in FIXTURES.rglob("*") if p.is_file() and p.suffix not in (".md", ".yaml")
    )
    for copy in range(args.copies):
        for n, path in enumerate(files):
            kind = "html" if path.suffix in (".html", ".htm") else "feed"
            name = f"/f{copy}-{n}"
            Handler.bodies[name] = path.read_bytes()
            if kind == "feed":
                sources.append((name, kind))
        for name, (kind, body) in hostile_bodies().items():
            Handler.bodies[f"/{name}-{copy}"] = body
            sources.append((f"/{name}-{copy}", kind))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    lines = ["sources:"]
    for i, (path, kind) in enumerate(sources):
        extra = ", selectors: {item: 'li.item', link: a}" if kind == "html" else ""
        lines.append(
            f"  - {{id: s{i}, kind: {kind}, url: 'http://127.0.0.1:{port}{path}', lang: en{extra}}}"
        )
    lines += [
        "concepts:",
        "  nk_people: {en: [north korean*, defector*], ko: [탈북민]}",
        "  sent_back: {en: [repatriat*, sent back], ko: [강제북송]}",
        "rules:",
        "  - {id: r, event: forced_repatriation, severity: high, all_of: [nk_people, sent_back]}",
        "settings: {allow_private_addresses: true, retries: 0, per_host: 4}",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "sources.yaml"
        cfg.write_text("\n".join(lines) + "\n")
        db = f"sqlite:///{Path(tmp) / 'h.db'}"
        started = time.monotonic()
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "watcher", "--config", str(cfg), "--db", db),
                *("--log-level", "warning", "run", "--once", "--all"),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        peak = main_peak = 0.0
        while proc.poll() is None:
            peak = max(peak, tree_pss_mib(proc.pid))
            main_peak = max(main_peak, rss_mib(proc.pid))
            time.sleep(0.05)
        out, err = proc.communicate()
        took = time.monotonic() - started
    failed = sum(1 for line in err.splitlines() if " s" in line and "WARNING" in line)
    print(f"hostile set: {len(sources)} sources ({args.copies} copies), one `run --once` cycle")
    print(
        f"  peak: tree PSS {peak:.0f} MiB, main process RSS {main_peak:.0f} MiB  "
        f"wall {took:.1f} s  exit {proc.returncode}"
    )
    last = out.strip().splitlines()[-1] if out.strip() else "-"
    print(f"  warnings logged {failed}; last line: {last}")


if __name__ == "__main__":
    main()
