"""`watcher eval` and `watcher match --explain`: scoring by hand, the CLI, the rule language."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from watcher.cli import cli
from watcher.config import load_config_text
from watcher.evaluate import (
    PRF,
    EvalInputError,
    best_link,
    cluster_errors,
    cluster_scores,
    link_text,
    prf,
    read_labelled,
    report,
)
from watcher.rules import Matcher, compile_rules

CONFIG = """\
sources: []
concepts:
  nk_people: {gloss: North Korean escapees, en: [north korean*, defector*], ko: [탈북민],
              zh: [脱北者]}
  sent_back: {gloss: sent back, en: [repatriat*, sent back], ko: [북송], zh: [遣返, 遣送]}
  arrested: {en: [arrest*], ko: [체포]}
  films: {en: [film]}
  denial: {en: [denied]}
  un: {en: [UN]}
  government: {en: [government]}
  request: {en: [formal request]}
rules:
  - {id: return, event: forced_repatriation, all_of: [nk_people, sent_back],
     near: {words: 8, chars: 20}, none_of: [films]}
  - {id: arrest, event: detention, all_of: [nk_people, arrested]}
"""
# The rule language cases add these rules (not scored by `watcher eval` below).
MORE_RULES = """\
  - {id: return-sentence, event: policy_change, all_of: [nk_people, sent_back],
     none_in_sentence: [denial]}
  - {id: return-anywhere, event: policy_change, all_of: [nk_people, sent_back], none_of: [denial]}
  - {id: un-body, event: un_action, all_of: [un]}
  - {id: asks, event: policy_change, all_of: [government, request], near: {words: 3, chars: 10},
     context: [nk_people]}
"""

FR, DET = "forced_repatriation", "detention"
# (id, lang, title, labels, story, published); predicted by CONFIG in the comments
ITEMS = [
    ("en-1", "en", "China repatriated North Korean defectors", [FR], "s1", "2024-03-01T10:00Z"),
    ("en-2", "en", "Activists say China repatriated North Korean defectors", [FR], "s1",
     "2024-03-01T12:00Z"),  # FR
    ("en-3", "en", "North Korean defectors arrested in Laos", [DET], "s2", "2024-03-10"),  # DET
    ("en-4", "en", "Film about North Korean defectors sent back wins award", ["not_relevant"],
     None, "2024-03-12"),  # nothing: the film veto
    ("en-5", "en", "Defectors forcibly returned", [FR], "s1", "2024-03-01"),  # missed
    ("ko-6", "ko", "탈북민 북송 우려", [FR], "s1", "2024-03-20"),  # FR, too late to join s1
    ("ko-7", "ko", "탈북민 작가의 소설 속 북송 이야기", ["not_relevant"], None, "2024-04-15"),  # FR
    ("ko-8", "ko", "탈북민 체포 후 북송", [DET], "s4", "2024-05-01"),  # FR + DET
]  # fmt: skip


def labelled_lines() -> list[str]:
    return [
        json.dumps(
            {"id": i, "lang": lang, "title": title, "labels": labels,
             "relevant": labels != ["not_relevant"], "story": story, "published": published},
            ensure_ascii=False,
        )
        for i, lang, title, labels, story, published in ITEMS
    ]  # fmt: skip


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


# watcher/cli/ writes through click.get_text_stream, deprecated in click 8.3+ (reported).


def run(config_path: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--config", str(config_path), *args], input=stdin)


# --------------------------------------------------------------------------- pure scoring


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not JSON"),
        ('{"title": "x", "labels": []}', "'id' is missing"),
        ('{"id": "a-1", "title": "y", "labels": []}', "appears twice"),
        ('{"id": "a-2", "title": "y", "labels": "detention"}', "'labels' must be a list"),
        ('{"id": "a-3", "title": "y", "labels": [], "published": "last tuesday"}', "not an ISO"),
        ('{"id": "a-4", "title": "an unlabelled item"}', "'labels' is missing"),
        ('{"id": "a-5", "title": "y", "events": "detention"}', "'events' must be a list"),
        (
            '{"id": "a-6", "title": "y", "labels": [], "published_at": "soon"}',
            "'published_at' is not an ISO date: 'soon'",
        ),
        (
            '{"id": "a-7", "title": "y", "labels": [], "published": "2024-03-01", '
            '"published_at": "2024-03-02"}',
            "'published' and 'published_at' differ",
        ),
    ],
)
def test_read_labelled_errors_name_file_and_line(line: str, message: str) -> None:
    lines = ['{"id": "a-1", "title": "x", "labels": []}', "", line]
    with pytest.raises(EvalInputError) as info:
        read_labelled(lines, "set.jsonl")
    assert str(info.value).startswith("set.jsonl:3:")
    assert message in str(info.value)


def test_the_test_sets_events_field_is_read_as_labels() -> None:
    """The project's own labelled sets (tests/fixtures/rules) name the field `events`."""
    lines = [
        '{"id": "en-1", "title": "x", "events": ["detention"]}',
        '{"id": "en-2", "title": "y", "events": []}',
    ]
    one, two = read_labelled(lines, "corpus.jsonl")
    assert (one.labels, one.relevant, two.labels, two.relevant) == (
        {"detention"},
        True,
        set(),
        False,
    )


def test_read_labelled_takes_published_at_for_published() -> None:
    """`watcher match` (and `replay --format jsonl`) name the date `published_at`."""
    lines = [
        '{"id": "a-1", "title": "x", "labels": [], "published_at": "2024-03-01T10:00Z"}',
        '{"id": "a-2", "title": "x", "labels": [], "published": "2024-03-01T10:00Z"}',
        '{"id": "a-3", "title": "x", "labels": [], "published": "2024-03-01T10:00Z", '
        '"published_at": "2024-03-01T10:00Z"}',
    ]
    dates = {i.published for i in read_labelled(lines, "x")}
    assert dates == {datetime(2024, 3, 1, 10, tzinfo=UTC)}


def test_read_labelled_fields() -> None:
    one, _, _, four, *_ = read_labelled(labelled_lines(), "x")
    assert (one.labels, one.relevant, one.story, one.half) == ({FR}, True, "s1", "odd")
    assert (four.labels, four.relevant, four.story, four.half) == (set(), False, None, "even")
    assert one.published is not None and one.published.utcoffset() is not None


def test_prf_by_hand() -> None:
    got = prf([True, True, True, False, False], [True, False, True, True, False])
    assert got == PRF(tp=2, fp=1, fn=1)
    assert got.precision == pytest.approx(2 / 3) and got.recall == pytest.approx(2 / 3)
    assert PRF(1, 3, 0).f1 == pytest.approx(2 * 0.25 * 1 / 1.25)
    assert PRF(0, 2, 2).f1 == 0.0


@pytest.mark.parametrize(
    ("counts", "want"),
    [
        ((0, 0, 0), (None, None, None)),  # nothing labelled, nothing predicted
        ((0, 2, 0), (0.0, None, 0.0)),  # predicted, none labelled: no recall to measure
        ((0, 0, 2), (None, 0.0, 0.0)),  # labelled, none predicted: no precision to measure
    ],
)
def test_prf_of_nothing_is_none_not_perfect(counts: tuple[int, int, int], want: tuple) -> None:
    got = PRF(*counts)
    assert (got.precision, got.recall, got.f1) == want


# Predicted events per id, and what report() must say, computed by hand.
PREDICTED = {
    "en-1": {FR}, "en-2": {FR}, "en-3": {DET}, "ko-6": {FR}, "ko-7": {FR}, "ko-8": {FR, DET},
}  # fmt: skip
EXPECTED = {
    # relevance: tp 5 (1 2 3 6 8), fp 1 (ko-7), fn 1 (en-5)
    "relevance": (5 / 6, 5 / 6, 5 / 6),
    # forced_repatriation: tp 3 (1 2 6), fp 2 (ko-7 ko-8), fn 1 (en-5); detention: 2 of 2
    "events": {FR: (0.6, 0.75, 2 / 3), DET: (1.0, 1.0, 1.0)},
    "macro_f1": (2 / 3 + 1) / 2,
    "by_lang": {"en": (1.0, 0.75, 6 / 7), "ko": (2 / 3, 1.0, 0.8)},
    # odd: en-1 en-3 en-5 ko-7 → tp 2 fp 1 fn 1; even: en-2 en-4 ko-6 ko-8 → all right
    "halves": {"odd": (2 / 3, 2 / 3, 2 / 3), "even": (1.0, 1.0, 1.0)},
}


def triple(scores: dict) -> tuple[float, float, float]:
    return scores["precision"], scores["recall"], scores["f1"]


def check_report(got: dict) -> None:
    def close(a: tuple, b: tuple) -> bool:
        return a == pytest.approx(b, abs=1e-4)

    assert close(triple(got["relevance"]), EXPECTED["relevance"])
    for event, want in EXPECTED["events"].items():
        assert close(triple(got["events"][event]), want), event
    assert got["macro_f1"] == pytest.approx(EXPECTED["macro_f1"], abs=1e-4)
    for group in ("by_lang", "halves"):
        assert set(got[group]) == set(EXPECTED[group])
        for key, want in EXPECTED[group].items():
            assert close(triple(got[group][key]["relevance"]), want), (group, key)
    assert got["halves"]["odd"]["items"] == 4 and got["by_lang"]["ko"]["items"] == 3


def test_report_by_hand() -> None:
    items = read_labelled(labelled_lines())
    got = report(items, {k: frozenset(v) for k, v in PREDICTED.items()}, (FR, DET, "un_action"))
    check_report(got)
    assert got["events"]["un_action"]["support"] == 0  # absent: left out of macro_f1


def by_id(labels: str) -> dict:
    """ "xx-y" → {"a": "x", "b": "x", "c": None, "d": "y"}: a cluster (or story) per item."""
    return {"abcdefgh"[n]: None if c == "-" else c for n, c in enumerate(labels)}


# truth, predicted, (pair precision, pair recall, pair F1, ARI) worked out by hand
@pytest.mark.parametrize(
    ("truth", "predicted", "want"),
    [
        ("xx-", "112", (1.0, 1.0, 1.0, 1.0)),  # perfect
        ("xxyy", "1234", (None, 0.0, 0.0, 0.0)),  # all singletons: no pair found
        ("x--", "123", (None, None, None, None)),  # no pair on either side: nothing to score
        ("xx", "11", (1.0, 1.0, 1.0, 1.0)),  # one cluster, one story
        # 3 true pairs, 2 grouped, 1 right; ARI: expected 3*2/6 = 1, max 2.5 → 0 / 1.5
        ("xxxy", "1122", (0.5, 1 / 3, 0.4, 0.0)),
        # 2 true pairs, 3 grouped, 1 right; ARI: expected 2*3/10 = .6, max 2.5 → .4 / 1.9
        ("xxyy-", "11123", (1 / 3, 0.5, 0.4, 0.4 / 1.9)),
    ],
)
def test_cluster_scores(truth: str, predicted: str, want: tuple) -> None:
    got = cluster_scores(by_id(truth), by_id(predicted))
    keys = ("pair_precision", "pair_recall", "pair_f1", "ari")
    assert tuple(got[k] for k in keys) == pytest.approx(want, abs=1e-4)


def test_cluster_scores_without_story_labels_are_none() -> None:
    got = cluster_scores(by_id("---"), by_id("112"), labelled=False)
    keys = ("pair_precision", "pair_recall", "pair_f1", "ari")
    assert [got[k] for k in keys] == [None] * 4 and got["predicted_pairs"] == 1


def test_cluster_errors() -> None:
    split, mixed = cluster_errors(by_id("xxy--z"), {k: int(v) for k, v in by_id("122334").items()})
    assert split == {"x": [["a"], ["b"]]}
    # story 2 mixes x and y; story 3 holds two unrelated items; stories 1 and 4 are fine
    assert mixed == {2: {"x": ["b"], "y": ["c"]}, 3: {"-": ["d", "e"]}}


# --------------------------------------------------------------------------- the CLI


def test_eval_json_scores_match_hand_computation(config_path: Path, tmp_path: Path) -> None:
    labelled = tmp_path / "dev.jsonl"
    labelled.write_text("\n".join(labelled_lines()) + "\n", encoding="utf-8")
    result = run(config_path, "eval", str(labelled), "--format", "json", "--stories")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert {"relevance", "macro_f1", "events", "by_lang", "halves", "stories"} <= got.keys()
    assert set(got["halves"]) == {"odd", "even"}
    check_report(got)
    stories = got["stories"]
    # matched: en-1 en-2 join (same day, alike titles); en-3, ko-6, ko-7, ko-8 stand alone.
    # s1 has 3 true pairs among them (en-1 en-2 ko-6), 1 found: P 1, R 1/3, F1 0.5;
    # ARI: 15 pairs, expected 3*1/15 = 0.2, max (3+1)/2 = 2 → 0.8 / 1.8
    assert (stories["items"], stories["true_pairs"], stories["predicted_pairs"]) == (6, 3, 1)
    keys = ("pair_precision", "pair_recall", "pair_f1", "ari")
    assert [stories[k] for k in keys] == pytest.approx([1.0, 1 / 3, 0.5, 0.8 / 1.8], abs=1e-4)

    # each half alone: odd holds en-1, en-3, ko-7 (no two of one story); even holds en-2 and
    # ko-6 of s1 (ko-6 too late to join) and ko-8
    halves = got["stories_by_half"]
    assert (halves["odd"]["items"], halves["odd"]["true_pairs"]) == (3, 0)
    even = halves["even"]
    assert (even["items"], even["true_pairs"], even["predicted_pairs"]) == (3, 1, 0)
    assert even["pair_recall"] == 0.0

    every = list(_scores(got))
    assert len(every) > 20 and all(v is None or 0.0 <= v <= 1.0 for v in every)
    # events no item is labelled with and no rule reported: nothing measured, not 1.0
    assert got["events"]["un_action"] == {
        "precision": None, "recall": None, "f1": None, "support": 0
    }  # fmt: skip


def _scores(node: object) -> Iterator[float]:
    """Every precision, recall, F1 and ARI in a report, however deep."""
    for key, sub in node.items() if isinstance(node, dict) else ():
        if key in {"precision", "recall", "f1", "macro_f1", "pair_f1", "ari"}:
            yield sub
        else:
            yield from _scores(sub)


def test_eval_misses_says_why(config_path: Path, tmp_path: Path) -> None:
    labelled = tmp_path / "dev.jsonl"
    labelled.write_text("\n".join(labelled_lines()), encoding="utf-8")
    result = run(config_path, "eval", str(labelled), "--misses", "--stories")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith("8 items\n")
    misses = text.split("misses (- missed event, + wrong event):\n")[1].splitlines()
    assert misses[0].startswith("en-5 [en] -forced_repatriation  Defectors forcibly returned")
    assert misses[1].strip().startswith("✗ return (forced_repatriation): nk_people=")
    assert misses[1].endswith("— no sent_back")
    assert any(line.startswith("ko-8 [ko] +forced_repatriation") for line in misses)
    assert not any(line.startswith(("en-1 ", "en-4 ")) for line in misses)
    # the split, with the nearest two reports of its parts and why they stayed apart
    assert "  s1: en-1, en-2 | ko-6\n" in text
    assert "      en-2 ↔ ko-6: 0 = 18.5 days apart, beyond the story window (7 days)\n" in text


def test_eval_misses_show_a_labelled_files_text_and_never_obey_it(
    config_path: Path, tmp_path: Path
) -> None:
    takeover = "\x1b]0;owned\x07\x9b2J"  # a window title, then a cleared screen
    lines = labelled_lines()
    en5 = json.loads(lines[4])
    lines[4] = json.dumps(en5 | {"id": f"en-5{takeover}", "title": f"{takeover} {en5['title']}"})
    labelled = tmp_path / "dev.jsonl"
    labelled.write_text("\n".join(lines), encoding="utf-8")
    result = run(config_path, "eval", str(labelled), "--misses", "--stories")
    assert result.exit_code == 0, result.output
    misses = result.stdout.split("misses (- missed event, + wrong event):\n")[1]
    assert misses.startswith("en-5]0;owned2J [en] -forced_repatriation  ]0;owned2J Defectors")
    assert result.stdout.replace("\n", "").isprintable()


def test_eval_bad_line_exits_2_naming_file_and_line(config_path: Path, tmp_path: Path) -> None:
    labelled = tmp_path / "bad.jsonl"
    labelled.write_text(labelled_lines()[0] + "\n{oops\n", encoding="utf-8")
    result = run(config_path, "eval", str(labelled))
    assert result.exit_code == 2
    assert f"{labelled}:2: not JSON" in result.stderr
    assert result.stdout == ""


# A label is an event the rules report (CONFIG's rules, plus a custom one) or a shipped type.
@pytest.mark.parametrize(
    ("labels", "refused"),
    [
        ([FR], None),
        (["un_action"], None),  # shipped, though no rule here reports it
        (["tunnel_collapse"], None),  # reported by a rule of the configuration only
        (["forced_repatriaton"], "unknown event 'forced_repatriaton' (did you mean "
         "'forced_repatriation'?)"),
        (["tunnel_colapse"], "unknown event 'tunnel_colapse' (did you mean 'tunnel_collapse'?)"),
        ([DET, "un_acton"], "unknown event 'un_acton' (did you mean 'un_action'?)"),
        (["flood"], "unknown event 'flood' (events: border_reopening, china_position, detention, "
         "forced_repatriation, policy_change, tunnel_collapse, un_action)"),
    ],
)  # fmt: skip
def test_eval_refuses_a_label_that_names_no_known_event(
    config_path: Path, tmp_path: Path, labels: list[str], refused: str | None
) -> None:
    extra = "  - {id: tunnel, event: tunnel_collapse, all_of: [nk_people, arrested]}\n"
    config_path.write_text(CONFIG + extra, encoding="utf-8")
    labelled = tmp_path / "set.jsonl"
    line = json.dumps({"id": "a-1", "title": "North Korean defectors sent back", "labels": labels})
    labelled.write_text(labelled_lines()[0] + "\n" + line + "\n", encoding="utf-8")
    result = run(config_path, "eval", str(labelled))
    if refused is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {labelled}:2: {refused}"]
    assert result.stdout == ""


# Scores over nothing are "-" in text and null in JSON, never a perfect 1.00.
EN_1 = {
    "id": "en-1",
    "lang": "en",
    "title": "China repatriated North Korean defectors",
    "labels": [FR],
    "story": "s1",
}
NOTHING_TO_SCORE = [
    pytest.param(
        # ids without a number: both halves are empty
        [{**EN_1, "id": "first"}, {**EN_1, "id": "second", "story": "s2"}], [],
        ["  odd   n=0    relevance F1 - (P - R -)  macro-F1 -",
         "  even  n=0    relevance F1 - (P - R -)  macro-F1 -"],
        {("halves", "odd", "relevance", "f1"), ("halves", "even", "macro_f1")}, False,
        id="halves-without-ids-ending-in-a-number",
    ),
    pytest.param(
        # no item has a story: nothing to compare the grouping with
        [{**EN_1, "story": None}, {**EN_1, "id": "en-2", "story": None}], ["--stories"],
        ["stories: pairwise P - R - F1 -  ARI -  (2 matched items, 0 true pairs, 1 grouped)"],
        {("stories", "pair_precision"), ("stories", "ari"), ("stories_by_half", "odd", "ari")},
        True,
        id="stories-without-story-labels",
    ),
    pytest.param(
        # nothing labelled relevant and nothing matched
        [{"id": "x-1", "title": "Weather in Seoul", "labels": []}], [],
        ["  relevance              -  (none labelled, none predicted)",
         "  event macro-F1         -",
         "  detention              -  (none labelled, none predicted)"],
        {("relevance", "precision"), ("macro_f1",), ("events", "detention", "f1")}, False,
        id="nothing-relevant",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("rows", "args", "lines", "nulls", "warns"), NOTHING_TO_SCORE)
def test_eval_scores_over_nothing_are_not_perfect(
    config_path: Path,
    tmp_path: Path,
    rows: list[dict],
    args: list[str],
    lines: list[str],
    nulls: set[tuple[str, ...]],
    warns: bool,
) -> None:
    labelled = tmp_path / "set.jsonl"
    labelled.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    text = run(config_path, "eval", str(labelled), *args)
    assert text.exit_code == 0, text.output
    for line in lines:
        assert line in text.stdout.splitlines()
    warning = f"warning: no story labels in {labelled}: story scores need them"
    assert text.stderr.count(warning) == warns  # once, and only when there are none
    got = json.loads(run(config_path, "eval", str(labelled), "--format", "json", *args).stdout)
    for path in nulls:
        node = got
        for key in path:
            node = node[key]
        assert node is None, path


# One article under each name of its date (the relative "Tuesday" resolves against it), with
# blank lines between and after them: one verdict per article, no error for a blank line.
TUESDAY = "China repatriated North Korean defectors on Tuesday"
DATED = [
    ({"published_at": "2024-03-07"}, ["2024-03-05"]),
    ({"published": "2024-03-07"}, ["2024-03-05"]),
    ({"published": "2024-03-07", "published_at": "2024-03-07"}, ["2024-03-05"]),
    ({}, []),
]


def test_match_takes_either_name_of_the_date_and_skips_blank_lines(config_path: Path) -> None:
    rows = [json.dumps({"id": n, "title": TUESDAY, "lang": "en", **d}) for n, (d, _) in
            enumerate(DATED)]  # fmt: skip
    result = run(config_path, "match", "-", stdin="\n\n".join(rows) + "\n\n  \n")
    assert result.exit_code == 0, result.output
    got = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(row["id"], row["extracted"]["dates"]) for row in got] == [
        (n, dates) for n, (_, dates) in enumerate(DATED)
    ]


def test_match_explain_gives_terms_and_glosses(config_path: Path) -> None:
    line = json.dumps({"id": 7, "title": "탈북민 북송 우려", "lang": "ko"}, ensure_ascii=False)
    result = run(config_path, "match", "--explain", "-", stdin=line + "\n")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["id"] == 7 and row["events"] == [FR] and row["rules"] == ["return"]
    first = row["explain"][0]
    assert first.startswith("✓ return ") and "'탈북민'" in first and "'북송'" in first
    assert row["why"]["return"] == "탈북민 (North Korean escapees) near 북송 (sent back)"


# --------------------------------------------------------------------------- the rule language

DENIED = "Officials denied that North Korean defectors were repatriated."
BOTH = ["return", "return-sentence", "return-anywhere"]
# text, lang, the rules that fire (in config order)
CASES = [
    # none_in_sentence cancels the sentence it is in; none_of cancels the whole document
    (DENIED, "en", ["return"]),
    (DENIED + " Activists say North Korean defectors were repatriated on Monday.", "en",
     ["return", "return-sentence"]),
    ("North Korean defectors were repatriated. Officials denied it.", "en",
     ["return", "return-sentence"]),
    ("North Korean defectors were repatriated.", "en", BOTH),
    # an acronym written in capitals matches only in capitals
    ("Kim Jong Un spoke", "en", []),
    ("the un said little", "en", []),
    ("The UN said little", "en", ["un-body"]),
    ("Un rapport de l'UN", "en", ["un-body"]),
    # traditional Chinese matches simplified terms
    ("中國將脫北者遣返", "zh", BOTH),
    ("中國將脫北者遣返", "ko", []),
    ("中國將脫北者遣送回國", "zh", BOTH),
    ("中國的脫北者", "zh", []),
    # context must be present, at any distance; near applies to all_of alone
    ("The government made a formal request to Beijing. Much later, and at length, the talks "
     "turned to North Korean defectors.", "en", ["asks"]),
    ("The government made a formal request to Beijing.", "en", []),
    ("The government said nothing for weeks, then made a formal request about North Koreans.",
     "en", []),
]  # fmt: skip


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return compile_rules(load_config_text(CONFIG + MORE_RULES, "rules.yaml", {}).config)


@pytest.mark.parametrize(("text", "lang", "rules"), CASES)
def test_rule_language(matcher: Matcher, text: str, lang: str, rules: list[str]) -> None:
    assert list(matcher.match(text, lang=lang).rules) == rules


def test_best_link_says_what_joined_two_reports_and_what_kept_two_apart() -> None:
    from datetime import UTC, datetime, timedelta

    from watcher.stories import Facts, Grouping, breakdown, score

    day = datetime(2013, 6, 3, 9, tzinfo=UTC)

    def facts(key: str, at: datetime, **kw: object) -> Facts:
        base: dict = {"events": frozenset({FR}), "severity": "high", "title": key}
        return Facts(item_key=key, source_id="s", at=at, **(base | kw))

    grouping = Grouping(window=timedelta(days=7))
    laos = facts("laos", day, places=("Laos",), people=9)
    reaction = facts("reaction", day + timedelta(hours=30), places=("Laos",), people=9)
    later = facts("later", day + timedelta(days=20), places=("Laos",), people=9)
    other = facts("other", day + timedelta(hours=2), places=("Kunming",), people=12)
    for f in (laos, other, reaction, later):
        grouping.add(f, f.at)
    assert grouping.assigned["reaction"] == grouping.assigned["laos"]
    assert len(set(grouping.assigned.values())) == 3

    joined = best_link(grouping, ["laos"], ["reaction"])
    assert joined is not None and joined[2] == score(reaction, laos, grouping.window) == 3.5
    assert link_text(joined) == (
        "laos ↔ reaction: 3.5 = date 1, place 1 (Laos), count 1 (9), same event +0.5"
    )
    # of pairs that score alike (none can join), the nearest in time
    assert best_link(grouping, ["laos", "reaction"], ["later"])[:2] == ("reaction", "later")
    assert link_text(best_link(grouping, ["laos"], ["later"])) == (
        "laos ↔ later: 0 = 20 days apart, beyond the story window (7 days)"
    )
    # what takes evidence away is named too, and the total is `score`'s
    total, parts = breakdown(other, laos, grouping.window)
    assert total == score(other, laos, grouping.window) == 1.5
    assert parts == ("date 1.5", "same event +0.5", "counts disagree (12, 9) -0.5")
    shenyang = facts("shenyang", day, places=("Shenyang",))
    assert breakdown(other, shenyang, grouping.window) == (
        1.5,
        ("date 1.5", "same event +0.5", "places disagree -0.5"),
    )
    assert link_text(None) == "no two reports to compare"
