"""Rule matching speed: items/s with the shipped rules and with 20x as many rules.

    python benchmarks/match.py [--items 10000] [--runs 5]

The items are the labelled sets in tests/fixtures/rules (title + lead, four languages),
repeated to --items. The large rule set adds 20x the shipped rule count of synthetic rules,
each with its own concepts built from real words sampled from the same texts (so their terms
do hit, as a real rule set's would) plus nonsense terms. One core, one process; median of runs.

"long articles" are 1,000-character articles, alternately English and Korean, built from the
same texts: one in ten opens with an item the shipped rules match, the rest are runs of the
labelled items they do not match (near misses about North Korea, China and the UN: dozens of
term hits each, a harder load than general news). Rates there are per CPU second of this
process (time.process_time), so that other work on a shared machine does not lower them.

"with why" is the daemon's path (`pipeline.match_items`): each long article's verdict and, for
the rules that fired, why (`match(..., why=True)`, one scan), beside `match` then `why` (two).

"dated items" gives each item a publication time (spread over 30 days), so the matched ones
also have their relative dates resolved ("on Tuesday", 지난 3일, 上周): "cold" clears the
resolved-phrase cache before each run, "warm" keeps it, as a running process does.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from watcher import extract
from watcher.config import load_config, load_config_text
from watcher.rules import compile_rules

ROOT = Path(__file__).resolve().parent.parent


def load_items(n: int) -> list[dict]:
    items = []
    for name in ("corpus.jsonl", "heldout.jsonl"):
        path = ROOT / "tests" / "fixtures" / "rules" / name
        items += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [items[i % len(items)] for i in range(n)]


def synthetic_rules(shipped_text: str, items: list[dict], count: int) -> str:
    rng = random.Random(7)
    words = sorted(
        {w for item in items[:400] for w in (item["title"] + " " + item["text"]).split()}
    )
    words = [w.strip(".,;:\"'()[]“”‘’…") for w in words]
    words = [w for w in words if len(w) >= 3 and "*" not in w]
    doc = yaml.safe_load(shipped_text)
    for n in range(count):
        doc["concepts"][f"syn_a{n}"] = {"any": [*rng.sample(words, 6), f"zzq{n}alpha"]}
        doc["concepts"][f"syn_b{n}"] = {"any": [*rng.sample(words, 6), f"zzq{n}beta"]}
        doc["rules"].append(
            {
                "id": f"synthetic-{n}",
                "event": "synthetic",
                "all_of": [f"syn_a{n}", f"syn_b{n}"],
                "near": {"words": 20, "chars": 40},
            }
        )
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)


def long_articles(matcher, items: list[dict], n: int, chars: int = 1000) -> list[dict]:
    """`n` articles of `chars` characters, English and Korean in turn, one in ten relevant."""
    rng = random.Random(11)
    pools: dict[tuple[str, bool], list[dict]] = {}
    for item in items:
        if item["lang"] in ("en", "ko"):
            relevant = matcher.match(item["title"], item["text"], lang=item["lang"]).relevant
            pools.setdefault((item["lang"], relevant), []).append(item)
    articles = []
    for k in range(n):
        lang = ("en", "ko")[k % 2]
        first = rng.choice(pools[lang, k % 10 == 0])
        title, text = first["title"], first["text"]
        while len(title) + len(text) < chars:
            other = rng.choice(pools[lang, False])
            text += f" {other['title']}. {other['text']}"
        articles.append({"title": title, "text": text[: chars - len(title)], "lang": lang})
    return articles


def cpu_rate(matcher, items: list[dict], runs: int) -> tuple[float, int]:
    """Items per CPU second (median of runs) and how many were relevant."""
    rates, relevant = [], 0
    for _ in range(runs):
        started = time.process_time()
        relevant = sum(
            matcher.match(item["title"], item["text"], lang=item["lang"]).relevant for item in items
        )
        rates.append(len(items) / (time.process_time() - started))
    return statistics.median(rates), relevant


def cpu_rate_with_why(matcher, items: list[dict], runs: int, *, one_scan: bool) -> float:
    """Items per CPU second of the daemon's path (`pipeline.match_items`): the verdict and why
    each rule fired, from one scan (`match(..., why=True)`) or `match` then `why` (two scans)."""
    rates = []
    for _ in range(runs):
        started = time.process_time()
        for item in items:
            title, text, lang = item["title"], item["text"], item["lang"]
            if one_scan:
                matcher.match(title, text, lang=lang, why=True)
            elif matcher.match(title, text, lang=lang).relevant:
                matcher.why(title, text, lang=lang)
        rates.append(len(items) / (time.process_time() - started))
    return statistics.median(rates)


def rate(
    matcher, items: list[dict], runs: int, *, dated: bool = False, cold: bool = False
) -> tuple[float, int]:
    rates, relevant = [], 0
    start = datetime(2026, 11, 20, 3, tzinfo=UTC)
    published = [start - timedelta(days=n % 30) if dated else None for n in range(len(items))]
    for _ in range(runs):
        if cold:
            extract._parse.cache_clear()
        started = time.perf_counter()
        relevant = 0
        for item, when in zip(items, published, strict=True):
            relevant += matcher.match(
                item["title"], item["text"], lang=item["lang"], published=when
            ).relevant
        rates.append(len(items) / (time.perf_counter() - started))
    return statistics.median(rates), relevant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    items = load_items(args.items)
    shipped_path = ROOT / "sources.yaml"
    shipped = load_config(shipped_path, env={}).config
    started = time.perf_counter()
    base = compile_rules(shipped)
    compile_base = time.perf_counter() - started
    big_text = synthetic_rules(shipped_path.read_text(), items, 20 * base.rule_count)
    big_config = load_config_text(big_text, "synthetic.yaml", {}).config
    started = time.perf_counter()
    big = compile_rules(big_config, check_examples=False)
    compile_big = time.perf_counter() - started

    chars = statistics.mean(len(i["title"]) + len(i["text"]) for i in items)
    print(
        f"{len(items):,} items (mean {chars:.0f} characters), median of {args.runs} runs, one core"
    )
    base_rate, base_hits = rate(base, items, args.runs)
    big_rate, big_hits = rate(big, items, args.runs)
    rate(base, items[:50], 1, dated=True)  # dateparser's import and language data, once
    cold_rate, _ = rate(base, items, args.runs, dated=True, cold=True)
    warm_rate, _ = rate(base, items, args.runs, dated=True)
    print(
        f"  shipped rules   {base.rule_count:5d} rules: {base_rate:9,.0f} items/s "
        f"({base_hits:,} relevant; compiled in {compile_base * 1000:.0f} ms)"
    )
    print(
        f"  20x rules       {big.rule_count:5d} rules: {big_rate:9,.0f} items/s "
        f"({big_hits:,} relevant; compiled in {compile_big * 1000:.0f} ms)"
    )
    print(
        f"  dated items     {base.rule_count:5d} rules: {cold_rate:9,.0f} items/s cold, "
        f"{warm_rate:,.0f} warm (relative dates resolved)"
    )
    articles = long_articles(base, load_items(386), args.items // 2)
    long_base, long_hits = cpu_rate(base, articles, args.runs)
    long_big, long_big_hits = cpu_rate(big, articles, args.runs)
    print(
        f"  long articles   {base.rule_count:5d} rules: {long_base:9,.0f} items/s per CPU second "
        f"({len(articles):,} of 1,000 characters, en/ko; {long_hits:,} relevant)"
    )
    print(
        f"  long articles   {big.rule_count:5d} rules: {long_big:9,.0f} items/s per CPU second "
        f"({long_big_hits:,} relevant)"
    )
    one_scan = cpu_rate_with_why(base, articles, args.runs, one_scan=True)
    two_scans = cpu_rate_with_why(base, articles, args.runs, one_scan=False)
    print(
        f"  with why        {base.rule_count:5d} rules: {one_scan:9,.0f} items/s per CPU second "
        f"(long articles, as the daemon matches them; {two_scans:,.0f} scanning twice)"
    )
    print(
        f"  slowdown at {big.rule_count / base.rule_count:.0f}x rules: {base_rate / big_rate:.2f}x"
    )


if __name__ == "__main__":
    main()
