"""Outages from outside, against the whole daemon (`watcher run`) and local servers.

    python benchmarks/outages.py kill [--kills 20] [--db URL]
    python benchmarks/outages.py smtp [--down 60]

kill: 20 feeds polled every second and a local webhook. Twenty times: a new matching report
  is published, and the daemon is killed with SIGKILL at a random moment 0-3 s later, then
  started again. At the end every report must have reached the webhook: lost (never
  received) and duplicated (received more than once) are counted.
smtp: the mail server is down while ten reports are published, for --down seconds: longer
  than the retry budget of the old delivery (6 attempts with backoff 1 s doubling to 4 s,
  15 s). Then it comes back: lost, duplicated, out of order, and the time from its return
  to the last message are printed.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

ROOT = Path(__file__).resolve().parent.parent
FEEDS = 20


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    feeds: ClassVar[dict[str, bytes]] = {}
    received: ClassVar[list[str]] = []
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = self.feeds.get(self.path, b"")
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}")
        with self.lock:
            self.received.append(f"{payload.get('title', '')}\n{payload.get('message', '')}")
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


def config(directory: Path, port: int, channel: str, settings: str = "") -> Path:
    for n in range(FEEDS):
        Handler.feeds[f"/f{n}"] = rss(n, [f"Weather in city {n}"])
    lines = ["sources:"] + [
        f"  - {{id: f{n}, kind: feed, url: 'http://127.0.0.1:{port}/f{n}', interval: 1s, lang: en}}"
        for n in range(FEEDS)
    ]
    lines += [
        "concepts:",
        "  nk_people: {en: [north korean*, defector*]}",
        "  sent_back: {en: [repatriat*, sent back]}",
        "rules:",
        "  - {id: r, event: forced_repatriation, severity: high, all_of: [nk_people, sent_back]}",
        "channels:",
        f"  - {{id: out, url: '{channel}'}}",
        "routes:",
        "  - {channels: [out], group_wait: 0s}",
        f"settings: {{state_dir: '{directory}', jitter: 0, allow_private_addresses: true"
        f"{settings}}}",
    ]
    path = directory / "sources.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a daemon killed mid-request resets its connections: expected here


def serve() -> int:
    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return int(server.server_address[1])


def daemon(cfg: Path, db: str, log: Path | None = None) -> subprocess.Popen[str]:
    """`watcher run`; with `log`, at debug level into that file (to find out why)."""
    level = "debug" if log else "warning"
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "watcher", "--config", str(cfg), "--db", db),
            *("--log-level", level, "run", "--metrics-address", "off"),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w") if log else subprocess.DEVNULL,
        text=True,
    )


PLACES = ("Shenyang", "Dandong", "Yanji", "Tumen", "Hunchun", "Kunming", "Beijing", "Shanghai")


def title(k: int) -> str:
    # counts far apart, places apart: most reports are stories of their own
    place = PLACES[k % len(PLACES)]
    return f"Report {k}: police in {place} repatriate {10 * 3**k} North Korean defectors"


PUBLISHED: dict[int, list[str]] = {}


def publish(k: int, rng: random.Random) -> None:
    """Add report k to a random feed (a feed keeps what it published, as outlets do)."""
    n = rng.randrange(FEEDS)
    PUBLISHED.setdefault(n, [f"Weather in city {n}"]).insert(0, title(k))
    Handler.feeds[f"/f{n}"] = rss(n, PUBLISHED[n])


def wait(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def baselined(db: str) -> bool:
    """Has every source had its first (baseline) poll? Reports before it never alert."""
    from watcher.store import Store

    store = Store.open(db)
    try:
        states = store.fetch_states()
    except Exception:  # no tables yet
        return False
    finally:
        store.close()
    return len(states) == FEEDS and all(s.last_success_at for s in states.values())


def delivered(db: str, reports: int) -> set[int]:
    """The reports whose story reached the channel: stored, in a story, and that story has a
    sent message (a report that joins a story without changing it materially sends none)."""
    from watcher.store import Store
    from watcher.store.outbox import Outbox

    store = Store.open(db)
    try:
        out = set()
        for story in Outbox(store).export():
            if any(d["status"] == "sent" for d in story["deliveries"]):
                titles = [i["title"] for i in story["items"]]
                out |= {k for k in range(reports) if title(k) in titles}
        return out
    finally:
        store.close()


def show_lost(db: str, lost: list[int]) -> None:
    """What the database holds of each lost report (for finding out why)."""
    from watcher.store import Store
    from watcher.store.outbox import Outbox

    store = Store.open(db)
    stories = list(Outbox(store).export())
    items = {i.title: i for i in store.iter_items()}
    states = store.fetch_states()
    store.close()
    for k in lost:
        item = items.get(title(k))
        story = next((st for st in stories if title(k) in [i["title"] for i in st["items"]]), None)
        print(f"  lost {k}: stored {item is not None}", end="")
        if item is not None:
            print(f" (source {item.source_id}, baseline {item.baseline})", end="")
        if story is not None:
            print(f", story {story['story']}: {[d['status'] for d in story['deliveries']]}", end="")
        print()
    bad = {sid: (s.last_error, s.last_polled_at) for sid, s in states.items() if s.last_error}
    print(f"  sources with errors: {bad}")


def kill(args: argparse.Namespace) -> None:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        port = serve()
        cfg = config(directory, port, f"json://127.0.0.1:{port}/hook")
        db = args.db or f"sqlite:///{directory / 'bench.db'}"
        proc = daemon(cfg, db)
        if not wait(lambda: baselined(db), 120):
            print("the baseline polls did not finish")
        for k in range(args.kills):
            publish(k, rng)
            time.sleep(rng.uniform(0, 3))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            last = k == args.kills - 1
            proc = daemon(cfg, db, Path("/tmp/outages-final.log") if args.show and last else None)
        done = wait(lambda: len(delivered(db, args.kills)) == args.kills, 180)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        lost = sorted(set(range(args.kills)) - delivered(db, args.kills))
        if args.show and lost:
            show_lost(db, lost)
    # a message is one story revision: the same text twice is one delivery sent twice
    dup = sum(c - 1 for c in Counter(Handler.received).values())
    print(f"kill -9 x {args.kills} ({'sqlite' if not args.db else args.db.split(':')[0]})")
    print(f"  reports {args.kills}  lost {len(lost)}  duplicated {dup}  drained {done}")


def smtp(args: argparse.Namespace) -> None:
    from aiosmtpd.controller import Controller

    mails: list[tuple[float, str]] = []

    class Mail:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            body = message.get_body(("plain", "html"))
            text = body.get_content() if body is not None else ""
            mails.append((time.monotonic(), f"{message['Subject']}\n{text}"))
            return "250 OK"

    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        mport = probe.getsockname()[1]
    rng = random.Random(3)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        port = serve()
        url = f"mailto://127.0.0.1:{mport}?from=w@example.org&to=a@example.org&mode=insecure"
        cfg = config(
            directory,
            port,
            url,
            ", delivery_backoff: 1s, delivery_max_backoff: 4s, delivery_attempts: 6",
        )
        db = f"sqlite:///{directory / 'bench.db'}"
        proc = daemon(cfg, db)
        if not wait(lambda: baselined(db), 120):
            print("the baseline polls did not finish")
        down_at = time.monotonic()
        for k in range(10):
            publish(k, rng)
            time.sleep(args.down / 10)
        controller = Controller(Mail(), hostname="127.0.0.1", port=mport)
        controller.start()
        back = time.monotonic()
        drained = wait(lambda: all(any(title(k) in t for _, t in mails) for k in range(10)), 120)
        time.sleep(5)  # anything sent twice arrives by now
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        controller.stop()
        if args.show:
            subprocess.run(
                [
                    *(sys.executable, "-m", "watcher", "--config", str(cfg), "--db"),
                    *(f"sqlite:///{directory / 'bench.db'}", "alerts", "list", "--limit", "100"),
                ],
                cwd=ROOT,
            )
            for _, text in mails:
                print("----", text[:300].replace("\n", " | "))
    texts = [text for _, text in mails]
    lost = [k for k in range(10) if not any(title(k) in text for text in texts)]
    dup = sum(c - 1 for c in Counter(texts).values())
    # a message shows its story with every report it holds by then; the story's first report
    # (the lowest k in it) says where the message stood in the queue
    first = [min(k for k in range(10) if title(k) in text) for text in texts]
    print(
        f"SMTP down {back - down_at:.0f} s (old retry budget: 15 s), 10 reports, "
        f"{len(mails)} messages"
    )
    if lost:
        print(f"  first subject: {mails[0][1] if mails else None}")
    print(
        f"  lost {len(lost)}  duplicated {dup}  in order {first == sorted(first)}  "
        f"drained {drained}: last message {mails[-1][0] - back:.1f} s after SMTP returned"
        if mails
        else "  nothing arrived"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    k = sub.add_parser("kill")
    k.add_argument("--kills", type=int, default=20)
    k.add_argument("--db", default=None, help="a PostgreSQL URL (default: SQLite in a temp dir)")
    k.add_argument("--show", action="store_true", help="say what the database holds of a loss")
    s = sub.add_parser("smtp")
    s.add_argument("--down", type=float, default=60)
    s.add_argument("--show", action="store_true", help="print the outbox and the messages")
    args = parser.parse_args()
    kill(args) if args.what == "kill" else smtp(args)


if __name__ == "__main__":
    main()
