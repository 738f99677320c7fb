"""Benchmark: the web pages, search and feeds over a year of history.

Generates N items (default 200,000: English, Korean, Chinese and Japanese, from 40 outlets over
a year) of which some form stories (default 4,200, two to seven reports each, with their
matches), indexed for search as the daemon stores them; serves them with `watcher serve`'s
app under uvicorn in a child process, and prints p50/p95 milliseconds of the timeline, a story,
search (common, rare, no-hit; English and Korean), and the feeds; then `/feed.atom` again while
8 clients run no-hit searches without pause (a server that blocks its event loop on the
database shows it here).

    python benchmarks/web.py [--db sqlite|postgres] [--items 200000] [--stories 4200]
                             [--runs 40] [--keep PATH]

Targets: every search p95 <= 50 ms; /feed.atom p95 <= 100 ms beside the 8 searches.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import socket
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import create_engine, insert, text

from watcher.config import load_config_text
from watcher.store import Store, content_hash
from watcher.store import search as index
from watcher.store import tables as t

NOW = datetime(2026, 12, 1, tzinfo=UTC)
POSTGRES = os.environ.get(
    "WATCHER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
LANGS = ["en"] * 5 + ["ko"] * 3 + ["zh", "ja"]
SOURCES = [(f"outlet-{n:02d}", LANGS[n % len(LANGS)]) for n in range(40)]
PLACES = ["Dandong", "Shenyang", "Hunchun", "Tumen", "Yanji", "Kunming", "Laos", "Changbai"]
PLACE_KO = {"Dandong": "단둥", "Shenyang": "선양", "Hunchun": "훈춘", "Tumen": "투먼"}

EN_WORDS = (
    "the a of to in and on for with by from said officials government report week city "
    "province border trade market economy weather festival school students power energy "
    "prices rice harvest railway bridge factory workers meeting talks summit minister "
    "ministry statement press conference visit delegation exports imports sanctions "
    "north korean korea china chinese police security guards crossing river night"
).split()
EN_EVENT = (
    "defectors repatriated forcibly detained arrested sent back escapees detention centre "
    "human rights groups urged beijing to halt repatriation of north koreans"
).split()
KO_WORDS = (
    "정부 관계자 발표 지역 경제 시장 날씨 축제 학교 학생 전력 에너지 가격 쌀 수확 철도 다리 공장 "
    "노동자 회의 회담 장관 성명 기자회견 방문 대표단 수출 수입 제재 북한 중국 국경 경비 강 주민 "
    "당국 소식통 평양 무역 물가 단속 지시 간부 주민들"
).split()
KO_EVENT = "탈북민 강제북송 체포 구금 공안 송환 인권단체 우려 탈북자 북송".split()
ZH_WORDS = (
    "政府 官员 表示 地区 经济 市场 天气 学校 学生 能源 价格 铁路 "
    "工厂 会议 外交部 发言人 边境 贸易 朝鲜 中国"
).split()
ZH_EVENT = "脱北者 遣返 拘留 逮捕 难民 人权".split()
JA_WORDS = (
    "政府 当局 発表 地域 経済 市場 天気 学校 学生 価格 鉄道 工場 会議 外務省 国境 貿易 北朝鮮 中国"
).split()
JA_EVENT = "脱北者 強制送還 拘束 逮捕 難民 人権".split()

#: (label, q): the searches timed.
SEARCHES = [
    ("en common", "government"),
    ("en stemmed", "repatriation"),
    ("en rare", "Changbai"),
    ("en no-hit", "xylophone"),
    ("en phrase -excl", '"north korean" -sanctions'),
    ("ko common", "정부"),
    ("ko rare", "선양"),
    ("ko no-hit", "자전거"),
]


def sentence(rng: random.Random, lang: str, words: int, event: bool) -> str:
    vocab, extra = {
        "en": (EN_WORDS, EN_EVENT),
        "ko": (KO_WORDS, KO_EVENT),
        "zh": (ZH_WORDS, ZH_EVENT),
        "ja": (JA_WORDS, JA_EVENT),
    }[lang]
    chosen = [rng.choice(vocab) for _ in range(words)]
    if event:
        for i in range(rng.randrange(7), words, 7):
            chosen[i] = rng.choice(extra)
    sep = " " if lang in ("en", "ko") else ""
    return sep.join(chosen)


def generate(store: Store, n_items: int, n_stories: int, rng: random.Random) -> None:
    """Items over a year, in time order (ids grow with time), a story every so often."""
    span = timedelta(days=365).total_seconds()
    story_every = n_items // n_stories
    batch: list[dict[str, Any]] = []
    pending_story: list[tuple[int, dict[str, Any]]] = []
    story_rows: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    matches: list[dict[str, Any]] = []
    next_id = 1
    story_id = 0
    started = time.monotonic()
    with store.engine.begin() as conn:
        for n in range(n_items):
            at = NOW - timedelta(seconds=span * (1 - n / n_items))
            source, lang = SOURCES[rng.randrange(len(SOURCES))]
            in_story = n % story_every == 0 and story_id < n_stories
            place = rng.choice(PLACES)
            title = sentence(rng, lang, 8, in_story)
            body = sentence(
                rng, lang, rng.randint(40, 90) if lang in ("en", "ko") else 60, in_story
            )
            if in_story or rng.random() < 0.01:
                name = PLACE_KO.get(place, place) if lang == "ko" else place
                body += f" {name}"
            item_id = next_id
            next_id += 1
            batch.append(
                {
                    "id": item_id,
                    "key": f"https://{source}.example/{n}",
                    "source_id": source,
                    "url": f"https://{source}.example/{n}",
                    "title": title,
                    "text": body,
                    "lang": lang,
                    "published_at": at - timedelta(minutes=30),
                    "published_raw": None,
                    "fetched_at": at,
                    "baseline": False,
                    "content_hash": content_hash(title, body),
                }
            )
            if in_story:
                story_id += 1
                event = rng.choice(["forced_repatriation", "detention", "un_action"])
                story_rows.append(
                    {
                        "id": story_id,
                        "events": json.dumps([event]),
                        "severity": rng.choice(["high", "medium"]),
                        "title": title,
                        "people": rng.randint(2, 80),
                        "places": json.dumps([place]),
                        "first_seen_at": at,
                        "updated_at": at,
                        "revision": 1,
                        "item_count": 1,
                        "event_at": at - timedelta(minutes=30),
                    }
                )
                pending_story.append((story_id, {"event": event, "left": rng.randint(1, 6)}))
                links.append(_link(story_id, item_id, at))
                matches.append(_match(item_id, event, at))
            elif pending_story and rng.random() < 0.02:
                sid, state = pending_story[-1]
                links.append(_link(sid, item_id, at))
                matches.append(_match(item_id, state["event"], at))
                state["left"] -= 1
                if state["left"] <= 0:
                    pending_story.pop()
            if len(batch) >= 5000:
                _flush(conn, batch, story_rows, links, matches)
                print(f"  {n + 1:,} items, {story_id:,} stories, {time.monotonic() - started:.0f}s")
        _flush(conn, batch, story_rows, links, matches)
        for source, _ in SOURCES:
            conn.execute(
                t.sources.update()
                .where(t.sources.c.id == source)
                .values(item_count=select_count(conn, source))
            )
    if store.dialect == "postgresql":
        with store.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    else:
        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
            conn.execute(text(f"INSERT INTO {index.INDEX}({index.INDEX}) VALUES ('optimize')"))


def select_count(conn: Any, source: str) -> int:
    return int(
        conn.execute(
            text("SELECT count(*) FROM items WHERE source_id = :s"), {"s": source}
        ).scalar()
    )


def _link(story_id: int, item_id: int, at: datetime) -> dict[str, Any]:
    return {"story_id": story_id, "item_id": item_id, "added_at": at, "revision": 1, "facts": None}


def _match(item_id: int, event: str, at: datetime) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "rule_id": event,
        "event": event,
        "severity": "high",
        "people": None,
        "places": "[]",
        "dates": "[]",
        "why": None,
        "matched_at": at,
    }


def _flush(conn: Any, batch: list[Any], stories: list[Any], links: list[Any], m: list[Any]) -> None:
    if batch:
        conn.execute(insert(t.items), batch)
        conn.execute(
            insert(t.item_sources),
            [
                {"item_id": b["id"], "source_id": b["source_id"], "first_seen_at": b["fetched_at"]}
                for b in batch
            ],
        )
        index.index_items(conn, [(b["id"], b["title"], b["text"]) for b in batch])
    if stories:
        conn.execute(insert(t.stories), stories)
    if links:
        conn.execute(insert(t.story_items), links)
    if m:
        conn.execute(insert(t.matches), m)
    for rows in (batch, stories, links, m):
        rows.clear()


def config_text() -> str:
    return yaml.safe_dump(
        {
            "sources": [
                {"id": s, "kind": "feed", "url": f"https://{s}.example/feed", "lang": lang}
                for s, lang in SOURCES
            ],
            "settings": {"timezone": "Asia/Seoul"},
        }
    )


def _serve(url: str, port_queue: Any) -> None:
    from watcher.web import create_app, listen, serve

    store = Store.open(url)
    config = load_config_text(config_text(), "bench.yaml", {}).config
    sock = listen("127.0.0.1", 0)
    port_queue.put(sock.getsockname()[1])
    serve(create_app(store, config), sock)


def timed(client: httpx.Client, path: str, runs: int, fresh: bool = False) -> list[float]:
    """Milliseconds per request; `fresh`: a new address each time (an unused parameter), so
    the feed cache never answers."""
    for _ in range(3):
        client.get(path)
    out = []
    for n in range(runs):
        started = time.perf_counter()
        response = client.get(f"{path}{'&' if '?' in path else '?'}_={n}" if fresh else path)
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def line(label: str, values: list[float], target: float | None = None) -> str:
    p95 = pct(values, 95)
    verdict = "" if target is None else ("  ok" if p95 <= target else f"  OVER {target:g} ms")
    return f"  {label:<34} p50 {statistics.median(values):7.1f} ms   p95 {p95:7.1f} ms{verdict}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--stories", type=int, default=4_200)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument(
        "--keep", help="SQLite file, or PostgreSQL schema, to create once and reuse (not dropped)"
    )
    args = parser.parse_args()
    rng = random.Random(16)
    schema = None
    if args.db == "postgres":
        name = args.keep or f"bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(POSTGRES)
        with admin.begin() as conn:
            fresh = not conn.execute(
                text("SELECT 1 FROM pg_namespace WHERE nspname = :n"), {"n": name}
            ).first()
            if fresh:
                conn.execute(text(f'CREATE SCHEMA "{name}"'))
        schema = None if args.keep else name
        joiner = "&" if "?" in POSTGRES else "?"
        url = f"{POSTGRES}{joiner}options=-csearch_path%3D{name}"
    else:
        path = Path(args.keep) if args.keep else Path(tempfile.mkdtemp()) / "bench.db"
        fresh = not path.exists()
        url = f"sqlite:///{path}"
    try:
        store = Store.open(url)
        if fresh:
            store.upgrade()
            config = load_config_text(config_text(), "bench.yaml", {}).config
            store.sync_sources(config.sources, NOW)
            print(f"generating {args.items:,} items, {args.stories:,} stories on {args.db}")
            started = time.monotonic()
            generate(store, args.items, args.stories, rng)
            print(f"  generated in {time.monotonic() - started:.0f}s")
        with store.engine.connect() as conn:
            n_items = conn.execute(text("SELECT count(*) FROM items")).scalar()
            n_stories = conn.execute(text("SELECT count(*) FROM stories")).scalar()
            story_ids = list(conn.execute(text("SELECT id FROM stories")).scalars())
        store.close()
        run(url, args.runs, int(n_items or 0), int(n_stories or 0), story_ids, args.db)
    finally:
        if schema is not None:
            with create_engine(POSTGRES).begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


def run(url: str, runs: int, n_items: int, n_stories: int, story_ids: list[int], db: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    server = ctx.Process(target=_serve, args=(url, ports), daemon=True)
    server.start()
    try:
        port = ports.get(timeout=60)
        base = f"http://127.0.0.1:{port}"
        _wait(base)
        print(f"\n{db}: {n_items:,} items, {n_stories:,} stories; {runs} requests each")
        rng = random.Random(7)
        with httpx.Client(base_url=base, timeout=30) as client:
            print(line("timeline /", timed(client, "/", runs)))
            story_times = []
            for sid in rng.sample(story_ids, min(runs, len(story_ids))):
                started = time.perf_counter()
                assert client.get(f"/stories/{sid}").status_code == 200
                story_times.append((time.perf_counter() - started) * 1000)
            print(line("a story /stories/ID", story_times))
            for label, q in SEARCHES:
                found = client.get("/api/search", params={"q": q}).json()["results"]
                path = "/search?" + httpx.QueryParams({"q": q}).__str__()
                print(line(f"search {label} ({len(found)} on p.1)", timed(client, path, runs), 50))
            cursor = client.get("/api/search", params={"q": "government"}).json()["next_cursor"]
            print(
                line(
                    "search en common, page 2",
                    timed(client, f"/search?q=government&cursor={cursor}", runs),
                    50,
                )
            )
            print(line("/feed.atom", timed(client, "/feed.atom", runs)))
            print(line("/feed.atom, made each time", timed(client, "/feed.atom", runs, True)))
            print(line("/feed.json", timed(client, "/feed.json", runs)))
            print(line("/feed.json, made each time", timed(client, "/feed.json", runs, True)))
            print(line("/feed.atom?q=선양", timed(client, "/feed.atom?q=선양", runs)))
            print(
                line(
                    "/feed.atom?q=선양, made each time",
                    timed(client, "/feed.atom?q=선양", runs, True),
                )
            )
            print(line("/sources", timed(client, "/sources", runs)))
        # The searching clients run in their own process: their threads must not compete
        # with the measuring client for one interpreter lock.
        stop = ctx.Event()
        done = ctx.Value("i", 0)
        hammer = ctx.Process(target=_hammer, args=(base, stop, done), daemon=True)
        hammer.start()
        try:
            time.sleep(1.0)
            with httpx.Client(base_url=base, timeout=30) as client:
                feed = timed(client, "/feed.atom", runs)
                made = timed(client, "/feed.atom", runs, True)
        finally:
            stop.set()
            hammer.join(30)
        with done.get_lock():
            done_count = done.value
        print(f"  beside 8 clients searching for nothing without pause ({done_count} searches):")
        print(line("/feed.atom", feed, 100))
        print(line("/feed.atom, made each time", made))
    finally:
        server.terminate()
        server.join(10)


def _hammer(base: str, stop: Any, done: Any) -> None:
    """8 clients, each searching for what is nowhere (English, Korean) without pause."""

    def one(q: str) -> None:
        with httpx.Client(base_url=base, timeout=30) as c:
            while not stop.is_set():
                assert c.get("/search", params={"q": q}).status_code == 200
                with done.get_lock():
                    done.value += 1

    threads = [
        threading.Thread(target=one, args=(["xylophone", "자전거"][n % 2],)) for n in range(8)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


def _wait(base: str) -> None:
    for _ in range(200):
        try:
            httpx.get(base + "/openapi.json", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit("the server did not answer")


if __name__ == "__main__":
    socket.setdefaulttimeout(None)
    main()
