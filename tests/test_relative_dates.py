"""Relative and partial dates as wire copy writes them ("on Tuesday", 지난 3일, 上周, 先月),
resolved against the item's publication day; never after it. The texts are written for the
tests (no real reporting)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tests.helpers import ROOT, python, watcher
from tests.messages import item
from watcher.config import load_config
from watcher.extract import _DAY_FRAMES, _FIRST, _PHRASES, _WEEKDAY_FRAMES, _parse, dates
from watcher.pipeline import match_items
from watcher.rules import compile_rules, fold_chinese, normalize, publication_day

#: A Friday.
FRI = date(2026, 11, 20)
#: A Wednesday, early in a month (the 3rd).
WED = date(2026, 12, 2)


def norm(text: str, lang: str) -> str:
    """The text as the matcher hands it to extraction."""
    folded = normalize(text)
    return fold_chinese(folded) if lang == "zh" else folded


# (lang, text, published, expected dates in order of mention)
CASES: list[tuple[str, str, date, tuple[str, ...]]] = [
    # --- English
    ("en", "Border guards caught the group on Tuesday, activists said", FRI, ("2026-11-17",)),
    ("en", "The family was detained last Tuesday near Dandong", FRI, ("2026-11-17",)),
    ("en", "A rights group said on Friday the women were sent back", FRI, ("2026-11-20",)),
    ("en", "They had been held since last Friday", FRI, ("2026-11-13",)),
    ("en", "The escapees were caught on Sunday in Shenyang", WED, ("2026-11-29",)),
    ("en", "Police detained them yesterday", FRI, ("2026-11-19",)),
    ("en", "They crossed the river the day before yesterday", FRI, ("2026-11-18",)),
    ("en", "Nine defectors were repatriated last week", FRI, ("2026-11-09/2026-11-15",)),
    ("en", "The raid came earlier this week", FRI, ("2026-11-16/2026-11-20",)),
    ("en", "A crackdown began last month in Jilin", FRI, ("2026-10",)),
    ("en", "A crackdown began last month", date(2027, 1, 8), ("2026-12",)),
    ("en", "Arrests rose earlier this month", FRI, ("2026-11",)),
    ("en", "Held since Oct. 9 and moved on Monday", FRI, ("2026-10-09", "2026-11-16")),
    # --- Korean
    ("ko", "탈북민 5명이 지난 화요일 단둥에서 체포됐다", FRI, ("2026-11-17",)),
    ("ko", "지난주 화요일 공안에 붙잡혔다", FRI, ("2026-11-10",)),
    ("ko", "금요일 밤 북송된 것으로 알려졌다", FRI, ("2026-11-20",)),
    ("ko", "탈북민들은 지난주 북송됐다", FRI, ("2026-11-09/2026-11-15",)),
    ("ko", "지난 주에 체포된 일가족", FRI, ("2026-11-09/2026-11-15",)),
    ("ko", "지난달 구금시설에서 이송됐다", FRI, ("2026-10",)),
    ("ko", "이달 들어 단속이 강화됐다", FRI, ("2026-11",)),
    ("ko", "어제 투먼 세관을 통해 넘겨졌다", FRI, ("2026-11-19",)),
    ("ko", "그제 밤 북송됐다", FRI, ("2026-11-18",)),
    ("ko", "단체는 3일 이같이 밝혔다", FRI, ("2026-11-03",)),
    ("ko", "지난 17일 밤 북송됐다", FRI, ("2026-11-17",)),
    ("ko", "25일 오후 체포됐다", FRI, ("2026-10-25",)),
    ("ko", "지난달 25일 체포됐다", FRI, ("2026-10-25",)),
    ("ko", "지난 31일 북송됐다", WED, ("2026-10-31",)),
    ("ko", "10월 9일 체포돼 지난 3일 북송됐다", FRI, ("2026-10-09", "2026-11-03")),
    # --- Chinese (traditional folded to simplified, as the matcher does)
    ("zh", "人权团体称，上周二有脱北者被捕", FRI, ("2026-11-10",)),
    ("zh", "上週二有脫北者被捕", FRI, ("2026-11-10",)),
    ("zh", "周二凌晨在丹东被抓", FRI, ("2026-11-17",)),
    ("zh", "星期天被遣返", FRI, ("2026-11-15",)),
    ("zh", "上周有六十人被遣返", FRI, ("2026-11-09/2026-11-15",)),
    ("zh", "上个月在吉林被捕", FRI, ("2026-10",)),
    ("zh", "上月被捕", FRI, ("2026-10",)),
    ("zh", "本月以来多人被捕", FRI, ("2026-11",)),
    ("zh", "昨天被遣送回朝鲜", FRI, ("2026-11-19",)),
    ("zh", "外交部发言人昨日表示", FRI, ("2026-11-19",)),
    ("zh", "前天晚上被带走", FRI, ("2026-11-18",)),
    ("zh", "该团体3日表示", FRI, ("2026-11-03",)),
    ("zh", "25日凌晨被遣返", FRI, ("2026-10-25",)),
    ("zh", "上月25日被遣返", FRI, ("2026-10-25",)),
    # --- Japanese
    ("ja", "脱北者らは先週火曜日に拘束された", FRI, ("2026-11-10",)),
    ("ja", "火曜日に丹東で拘束された", FRI, ("2026-11-17",)),
    ("ja", "日曜に送還された", FRI, ("2026-11-15",)),
    ("ja", "先週、60人が送還された", FRI, ("2026-11-09/2026-11-15",)),
    ("ja", "先月、瀋陽で拘束された", FRI, ("2026-10",)),
    ("ja", "今月に入り取り締まりが強化された", FRI, ("2026-11",)),
    ("ja", "昨日、送還された", FRI, ("2026-11-19",)),
    ("ja", "一昨日に拘束された", FRI, ("2026-11-18",)),
    ("ja", "団体が3日、明らかにした", FRI, ("2026-11-03",)),
    ("ja", "25日夜に送還された", FRI, ("2026-10-25",)),
    ("ja", "先月25日に拘束された", FRI, ("2026-10-25",)),
    # --- no date in the text
    ("en", "China repatriates North Korean defectors, rights group says", FRI, ()),
    ("ko", "탈북민 강제북송 중단 촉구", FRI, ()),
    ("zh", "中国强制遣返脱北者", FRI, ()),
    ("ja", "中国が脱北者を強制送還", FRI, ()),
    # --- phrases that would resolve after publication: dropped
    ("en", "The court will rule next Tuesday", FRI, ()),
    ("en", "Talks are due this Saturday", FRI, ()),
    ("ko", "이달 25일 재판이 열린다", FRI, ()),
    ("ko", "오는 25일 북송될 예정이다", FRI, ()),
    ("ko", "이번 주 토요일 열린다", FRI, ()),
    ("zh", "本月25日将开庭", FRI, ()),
    ("zh", "下周二将被遣返", FRI, ()),
    ("ja", "今月25日に判決が出る", FRI, ()),
    ("ja", "来週火曜日に送還される見通し", FRI, ()),
    # --- look like dates, are not
    ("en", "They were held in the last week of the crackdown", FRI, ()),
    ("en", "A ruling is expected later this week", FRI, ()),
    ("en", "The Sunday Times reported the arrests", FRI, ()),
    ("ko", "3일 동안 조사를 받았다", FRI, ()),
    ("ko", "10일간 구금됐다", FRI, ()),
    ("ko", "지난 주민투표 이후", FRI, ()),
    ("ko", "어제오늘 일이 아니다", FRI, ()),
    ("zh", "每周一接受审讯", FRI, ()),
    ("zh", "一周一次", FRI, ()),
    ("zh", "本周期内", FRI, ()),
    ("zh", "3日内被遣返", FRI, ()),
    ("ja", "3日間拘束された", FRI, ()),
    ("ja", "毎週月曜に取り調べ", FRI, ()),
]


@pytest.mark.parametrize(
    ("lang", "text", "published", "expected"),
    CASES,
    ids=[f"{lang}-{text[:24]}" for lang, text, _, _ in CASES],
)
def test_relative_dates(lang: str, text: str, published: date, expected: tuple[str, ...]) -> None:
    assert dates(norm(text, lang), lang=lang, published=published) == expected


def test_nothing_is_resolved_without_a_publication_day() -> None:
    assert dates(norm("detained on Tuesday", "en"), 2026, lang="en") == ()
    assert dates(norm("지난 3일 체포", "ko"), 2026, lang="ko") == ()


@pytest.mark.parametrize(
    ("text", "published", "expected"),
    [
        ("detained on Dec. 28", date(2027, 1, 5), "2026-12-28"),  # last December
        ("a hearing on Dec. 5", FRI, "2026-12-05"),  # upcoming, within a month
        ("sent back on Jan. 10", FRI, "2026-01-10"),
        ("a hearing on Jan. 10", date(2026, 12, 20), "2027-01-10"),
        ("10월 9일 체포", FRI, "2026-10-09"),
        ("detained on Oct. 9, 2023", FRI, "2023-10-09"),  # a stated year stands
    ],
)
def test_a_date_written_without_a_year_is_at_most_a_month_ahead(
    text: str, published: date, expected: str
) -> None:
    assert dates(normalize(text), lang="en", published=published) == (expected,)


def test_every_phrase_is_read_by_the_library_as_what_it_names() -> None:
    """Guards an upgrade of dateparser: each phrase given to it still means a day, week or month."""
    for lang, phrases in _PHRASES.items():
        for kind, words in set(phrases.values()):
            period = kind.rsplit("-", 1)[-1]
            assert _parse(lang, words, FRI, period) is not None, (lang, words)


WEEKDAYS = {
    "en": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
    "ko": list("월화수목금토일"),
    "zh": ["周", "星期", "礼拜"],
    "ja": list("月火水木金土日"),
}


@pytest.mark.parametrize("lang", sorted(_FIRST))
def test_every_word_of_the_tables_can_begin_a_span(lang: str) -> None:
    """The pattern is tried only where a span can begin: a word added to a table must be there."""
    words = [
        *_WEEKDAY_FRAMES[lang],
        *_DAY_FRAMES.get(lang, {}),
        *_PHRASES[lang],
        *WEEKDAYS[lang],
        *"0123456789" * (lang != "en"),
    ]
    assert [w for w in words if not re.match(_FIRST[lang], w)] == []


def test_the_publication_day_is_the_day_where_the_item_was_written() -> None:
    late = datetime(2026, 11, 19, 23, 30, tzinfo=UTC)  # 08:30 on the 20th in Seoul and Tokyo
    assert publication_day(late, "ko") == date(2026, 11, 20)
    assert publication_day(late, "ja") == date(2026, 11, 20)
    assert publication_day(late, "zh") == date(2026, 11, 20)
    assert publication_day(late, "en") == date(2026, 11, 19)
    assert publication_day(FRI, "ko") == FRI


def test_the_matcher_resolves_against_the_publication_time() -> None:
    matcher = compile_rules(load_config(ROOT / "sources.yaml", env={}).config)
    title = "중국, 탈북민 60여명 강제북송"
    text = "인권단체는 탈북민들이 어제 단둥에서 북송됐다고 밝혔다."
    published = datetime(2026, 11, 19, 23, 0, tzinfo=UTC)  # the 20th, 08:00 in Seoul
    verdict = matcher.match(title, text, lang="ko", published=published)
    assert verdict.relevant and verdict.extracted.dates == ("2026-11-19",)
    assert matcher.match(title, text, lang="ko").extracted.dates == ()


def test_the_daemon_resolves_nothing_against_the_time_an_undated_item_was_fetched() -> None:
    """An undated report of years ago, fetched today: "어제" and "21일" are not dated to the
    fetch day (a 2006 article alerted as an event of last week)."""
    matcher = compile_rules(load_config(ROOT / "sources.yaml", env={}).config)
    fetched = datetime(2026, 11, 19, 23, 0, tzinfo=UTC)
    text = "인권단체는 탈북민들이 어제 단둥에서 북송됐고 21일 또 체포됐다고 밝혔다."
    undated = item("u", "s", "중국, 탈북민 60여명 강제북송", text=text, lang="ko")
    undated = replace(undated, published_at=None, fetched_at=fetched)
    dated = replace(undated, key="d", published_at=fetched)
    found = {one.key: match_items(matcher, [one], ())[0].dates for one in (undated, dated)}
    # "21일" alone is the latest 21st up to the publication day: none without one
    assert found == {"u": (), "d": ("2026-11-19", "2026-10-21")}


def test_the_library_is_loaded_only_for_a_candidate_span() -> None:
    script = (
        "import sys\n"
        "from datetime import date\n"
        "from watcher.extract import dates\n"
        "assert dates('no relative date here', lang='en', published=date(2026, 11, 20)) == ()\n"
        "assert 'dateparser' not in sys.modules\n"
        "dates('on tuesday', lang='en', published=date(2026, 11, 20))\n"
        "assert 'dateparser' in sys.modules\n"
    )
    result = python(script)
    assert result.returncode == 0, result.stderr


ARTICLES = [
    {
        "id": "ko",
        "lang": "ko",
        "title": "중국, 탈북민 60여명 강제북송",
        "text": "대북 인권단체는 지난 17일 밤 단둥에서 탈북민들이 북송됐다고 밝혔다.",
        "published_at": "2026-11-20T09:00:00+09:00",
    },
    {
        "id": "en",
        "lang": "en",
        "title": "China forcibly repatriates 60 North Korean defectors",
        "text": "Chinese authorities sent the group back at Dandong on Tuesday, activists said.",
        "published_at": "2026-11-20",
    },
    {
        "id": "zh",
        "lang": "zh",
        "title": "中国上周二强制遣返60名脱北者",
        "text": "人权团体表示，这些脱北者在丹东被遣送回朝鲜。",
        "published_at": "2026-11-20T10:00:00+08:00",
    },
    {
        "id": "ja",
        "lang": "ja",
        "title": "中国、脱北者60人を強制送還",
        "text": "人権団体によると、脱北者らは先月に丹東から北朝鮮へ送還された。",
        "published_at": "2026-11-20",
    },
    {
        "id": "undated",
        "lang": "en",
        "title": "China forcibly repatriates 60 North Korean defectors",
        "text": "Chinese authorities sent the group back at Dandong on Tuesday, activists said.",
    },
]


@pytest.mark.e2e
def test_match_shows_relative_dates_in_every_language(tmp_path: Path) -> None:
    stdin = "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in ARTICLES)
    result = watcher(
        "--config", str(ROOT / "sources.yaml"), "match", "-", stdin=stdin, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    rows = {row["id"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert all(row["relevant"] for row in rows.values())
    got = {key: row["extracted"]["dates"] for key, row in rows.items()}
    assert got == {
        "ko": ["2026-11-17"],
        "en": ["2026-11-17"],
        "zh": ["2026-11-10"],
        "ja": ["2026-10"],
        "undated": [],  # no publication date: nothing to resolve against
    }
