"""Event rules: every rule term compiled into one Aho-Corasick automaton, matched in one pass.

    config rules + concepts ──compile()──▶ Matcher ──match(title, text, lang, tags)──▶ Verdict

Matching semantics (docs/rules.md):

- Text is normalised once: Unicode NFKC, case-folded, dashes and runs of whitespace folded
  to one space. Terms are normalised the same way.
- A term with Latin letters matches whole words; a trailing `*` makes it a prefix
  (`repatriat*`). Other terms (Korean, Chinese, Japanese) match as substrings, so particles
  may follow (탈북민이, 탈북민을, 탈북민들은) and no word breaking is needed.
- A concept's terms are listed per language (`en:`, `ko:`, `zh:`, `ja:`) and looked for in
  items of that language (given by the source, else detected from the script); terms under
  `any:` and inline term lists are looked for in every item.
- A rule matches when each `all_of` group has a hit, no `none_of` group has one, its tag and
  language filters pass, and (with `near`) one hit of every `all_of` group lies within the
  window: words for Latin-script text, characters for Korean, Chinese and Japanese text.

Cost grows with the text and the hits, not with the number of rules: one automaton pass
finds the hits of every term, and only rules whose first group was hit are evaluated.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from itertools import accumulate, chain, repeat
from typing import Any
from zoneinfo import ZoneInfo

import ahocorasick_rs

from watcher.config import DEFAULT_ZONE_BY_LANG, GLOSS, NOT_INSIDE, SEVERITIES, Config, Rule
from watcher.errors import RuleError
from watcher.extract import TITLE_END, Extracted, extract
from watcher.extract import WORD_CHARS as _WORD_CHARS
from watcher.items import detect_lang

_FOLD = re.compile(r"[\s\-\u2010-\u2015\u2212\u00b7\u30fb_/]+")
_CJK = re.compile(
    r"[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]"
)
_LATIN_WORD = re.compile(r"[0-9A-Za-z\u00c0-\u024f]")
#: Joins title and text: no term spans it (extraction finds the title's end by it).
_SEPARATOR = TITLE_END


#: What `_FOLD` folds besides whitespace; and the whitespace NFKC leaves as it is (every
#: other space character becomes " " under NFKC).
_FOLD_MARKS = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u00b7\u30fb_/"
_FOLD_SPACES: tuple[str, ...] = (
    "  ",
    *"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\u1680\u2028\u2029",
)


#: Characters common in news text that NFKC changes, each with its NFKD. NFKC decomposes them
#: so, then composes: replacing them first gives the same result, and often text that NFKC's
#: quick check passes as it is. Otherwise one "…" in a Korean article has every Hangul syllable
#: decomposed and composed again (40 µs a 1,000-character article, 3 µs with the replacement).
_DECOMPOSED_FIRST = tuple(
    (char, unicodedata.normalize("NFKD", char)) for char in "\u2026\u00a0\u3000\u2025"
)


def nfkc(text: str) -> str:
    """`unicodedata.normalize("NFKC", text)`."""
    if not text.isascii():
        for char, decomposed in _DECOMPOSED_FIRST:
            if char in text:
                text = text.replace(char, decomposed)
    return unicodedata.normalize("NFKC", text)


def cased(text: str) -> str:
    """NFKC, dashes/underscores/slashes and whitespace runs folded to a space; case kept.

    The same as `_FOLD.sub(" ", text).strip()` after NFKC, at a third of its cost: a regular
    expression visits every character, while substring tests find the rare marks and runs.
    """
    text = nfkc(text)
    if "\u2019" in text or "\u2018" in text:
        text = text.replace("\u2019", "'").replace("\u2018", "'")
    for mark in _FOLD_MARKS:
        if mark in text:
            text = text.replace(mark, " ")
    for space in _FOLD_SPACES:
        if space in text:
            return " ".join(text.split())
    return text.strip(" ")


def normalize(text: str) -> str:
    """NFKC, case-folded, dashes/underscores/slashes and whitespace runs folded to a space."""
    return cased(text).casefold()


def _traditional_to_simplified() -> tuple[re.Pattern[str], dict[str, str]]:
    """OpenCC's traditional→simplified mapping of every single CJK ideograph that changes."""
    import opencc

    ideographs = "".join(chr(c) for c in range(0x3400, 0xA000))
    simplified = opencc.OpenCC("t2s.json").convert(ideographs)
    if len(simplified) != len(ideographs):  # pragma: no cover - a phrase rule changed length
        pairs = {a: opencc.OpenCC("t2s.json").convert(a) for a in ideographs}
        table = {a: b for a, b in pairs.items() if a != b and len(b) == 1}
    else:
        table = {a: b for a, b in zip(ideographs, simplified, strict=True) if a != b}
    return re.compile("[" + "".join(sorted(table)) + "]"), table


_T2S: tuple[re.Pattern[str], dict[str, str]] | None = None


def fold_chinese(text: str) -> str:
    """Traditional Chinese characters folded to simplified (脫北者 → 脱北者, 遣送 stays),
    so that one term list serves both scripts. Position-preserving: one character each."""
    global _T2S
    if _T2S is None:
        _T2S = _traditional_to_simplified()
    pattern, table = _T2S
    return pattern.sub(lambda m: table[m.group()], text)


#: The UTF-8 first bytes of the characters `_CJK` matches (U+1100–U+11FF: E1; U+3040–U+3FFF:
#: E3; U+4000–U+9FFF: E4–E9; U+AC00–U+D7AF: EA–ED; U+F900–U+FAFF: EF).
_CJK_LEADS = tuple(bytes([b]) for b in (0xE1, *range(0xE3, 0xEE), 0xEF))


def is_cjk_text(text: str) -> bool:
    """True when most letters are Hangul, kana or Han: proximity then counts characters."""
    sample = text[:2000]
    # Most text in a Latin script has no character of `_CJK` at all: their UTF-8 forms all
    # start with one of `_CJK_LEADS`, and looking for a byte is cheaper than a regex pass.
    if sample.isascii():
        return False
    data = sample.encode("utf-8", "surrogatepass")
    if not any(lead in data for lead in _CJK_LEADS):
        return False
    cjk = len(_CJK.findall(sample))
    latin = len(_LATIN_WORD.findall(sample))
    return cjk > latin / 4


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class RuleMatch:
    rule_id: str
    event: str
    severity: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the rules say about one item."""

    relevant: bool
    matches: tuple[RuleMatch, ...] = ()
    extracted: Extracted = field(default_factory=Extracted)
    #: (rule id, the line `Matcher.why` gives it) for each rule that fired, when asked for.
    why: tuple[tuple[str, str], ...] = ()

    @property
    def events(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.event for m in self.matches))

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(m.rule_id for m in self.matches)

    @property
    def severity(self) -> str | None:
        if not self.matches:
            return None
        return max((m.severity for m in self.matches), key=SEVERITIES.index)


NOT_RELEVANT = Verdict(relevant=False)


# --------------------------------------------------------------------------- compiled form


@dataclass(frozen=True, slots=True)
class _Escalation:
    to: str
    groups: tuple[int, ...]
    people_at_least: int | None


@dataclass(frozen=True, slots=True)
class _Rule:
    id: str
    event: str
    severity: str
    all_of: tuple[int, ...]
    none_of: tuple[int, ...]
    near_words: int | None
    near_chars: int | None
    escalations: tuple[_Escalation, ...]
    tags: frozenset[str]
    langs: frozenset[str]
    none_in_sentence: tuple[int, ...] = ()
    context: tuple[int, ...] = ()
    all_of_set: frozenset[int] = frozenset()
    none_of_set: frozenset[int] = frozenset()


_PLUS_ONE = (1).__add__
#: Where a sentence ends in normalised text: . ! ? … (before a space), 。！？ and the title's end.
#: It starts with a class, so it is looked for by scanning for the class (`[.!?…]+` is the first
#: character and `[.!?…]*`; 。！？ and the title's end match alone).
_SENTENCE_END = re.compile(r"[.!?…。！？\u2016](?:(?<=[。！？\u2016])|[.!?…]*[\"'”’)]*(?= ))")


class _Scan:
    """One item's normalised text and the hits of every term group in it."""

    __slots__ = (
        "_in_words",
        "_sentences",
        "_words",
        "aligned",
        "cjk",
        "found",
        "hits",
        "lang",
        "norm",
        "spans",
    )

    def __init__(self, norm: str, lang: str, hits: dict[int, list[int]]) -> None:
        self.norm = norm
        self.lang = lang
        self.hits = hits
        #: Group → (start, length) of each hit; filled only when explaining.
        self.spans: dict[int, list[tuple[int, int]]] = {}
        #: The text with its case, where positions line up with `norm` (for acronyms).
        self.aligned: str | None = None
        #: What the automaton found: (term index, start, end) of every term in the text.
        self.found: list[tuple[int, int, int]] = []
        self.cjk: bool | None = None
        self._words: list[int] | None = None
        self._in_words: dict[int, list[int]] = {}
        self._sentences: list[int] | None = None

    def is_cjk(self) -> bool:
        if self.cjk is None:
            self.cjk = self.lang in ("ko", "zh", "ja") or is_cjk_text(self.norm)
        return self.cjk

    def word_starts(self) -> list[int]:
        if self._words is None:
            # The spaces' positions, from the lengths of the words between them (all in C).
            lengths = map(_PLUS_ONE, map(len, self.norm.split(" ")))
            self._words = list(accumulate(lengths, initial=-1))[1:-1]
        return self._words

    def word_index(self, position: int) -> int:
        return bisect_right(self.word_starts(), position)

    def in_words(self, group: int) -> list[int]:
        """A group's hits as word numbers (computed once per item, shared by rules)."""
        found = self._in_words.get(group)
        if found is None:
            starts = self.word_starts()
            found = self._in_words[group] = list(
                map(bisect_right, repeat(starts), self.hits[group])
            )
        return found

    def sentence(self, position: int) -> tuple[int, int]:
        """The [start, end) of the sentence holding `position`."""
        if self._sentences is None:
            self._sentences = [m.end() for m in _SENTENCE_END.finditer(self.norm)]
        k = bisect_right(self._sentences, position)
        start = self._sentences[k - 1] if k else 0
        end = self._sentences[k] if k < len(self._sentences) else len(self.norm)
        return start, end


class Matcher:
    """The compiled rules. Build with `compile_rules`; `match` is pure and thread-safe."""

    def __init__(
        self,
        automata: dict[str | None, _Automaton],
        rules: tuple[_Rule, ...],
        by_first_group: dict[int, tuple[int, ...]],
        group_names: dict[int, str] | None = None,
        glosses: dict[int, str] | None = None,
        hiding: dict[int, tuple[int, ...]] | None = None,
    ) -> None:
        #: One automaton per language with terms (its own and `any:` terms); None: the
        #: `any:` terms alone, for the other languages. A Korean item never pays for
        #: hits of English terms.
        self._automata = automata
        self._rules = rules
        self._by_first_group = by_first_group
        #: Group id → the concept's name, or its inline terms (for explanations).
        self._group_names = group_names or {}
        #: Group id → the concept's English gloss, where the file gives one.
        self._glosses = glosses or {}
        #: Group id → groups whose longer hits hide its hits (`not_inside`).
        self._hiding = hiding or {}

    @property
    def rule_count(self) -> int:
        return len(self._rules)

    def match(
        self,
        title: str,
        text: str = "",
        *,
        lang: str | None = None,
        tags: Iterable[str] = (),
        published_year: int | None = None,
        published: date | None = None,
        why: bool = False,
    ) -> Verdict:
        """The rules that fire on an item, and for a relevant item what it states: people,
        places, dates. `published` (an aware time, or a day) dates the item: relative dates
        ("on Tuesday", 지난 3일, 上周) are resolved against it, and it gives the year of dates
        written without one (else `published_year` does).

        With `why`, the verdict also gives the line `why` gives each rule that fired, from the
        same scan (calling both would normalise the text and run the automaton twice): the
        spans of the hits are collected again from what the automaton found, for a relevant
        item only."""
        scan = self._scan(title, text, lang)
        verdict, matched = self._verdict(scan, tags, published_year, published)
        if why and matched:
            spanned = self._with_spans(scan)
            lines = tuple((rule.id, self._why_line(spanned, rule)) for rule in matched)
            verdict = replace(verdict, why=lines)
        return verdict

    def _verdict(
        self,
        scan: _Scan,
        tags: Iterable[str],
        published_year: int | None,
        published: date | None,
    ) -> tuple[Verdict, list[_Rule]]:
        """The verdict on a scanned item, and the rules that fired."""
        hits = scan.hits
        if not hits:
            return NOT_RELEVANT, []
        by_first = self._by_first_group
        candidates = set(chain.from_iterable(map(by_first.__getitem__, hits.keys() & by_first)))
        if not candidates:
            return NOT_RELEVANT, []
        tagset = frozenset(tags)
        matched: list[_Rule] = []
        keys = hits.keys()
        for index in sorted(candidates):
            rule = self._rules[index]
            # The set checks inline (most candidates fail here); `_fails` says the same in words.
            if rule.langs and scan.lang not in rule.langs:
                continue
            if rule.tags and not (rule.tags & tagset):
                continue
            # The view on the left: `frozenset <= view` copies the view into a set and
            # `frozenset.isdisjoint(view)` walks all of it; the view's own operators walk the
            # rule's few groups (hundreds of groups hit in a long article with many rules).
            if not keys >= rule.all_of_set or not keys.isdisjoint(rule.none_of_set):
                continue
            if self._position_fails(rule, scan) is None:
                matched.append(rule)
        if not matched:
            return NOT_RELEVANT, []
        day = publication_day(published, scan.lang) if published is not None else None
        extracted = extract(
            scan.norm,
            lang=scan.lang,
            published_year=day.year if day is not None else published_year,
            published=day,
        )
        results = []
        for rule in matched:
            severity = rule.severity
            for esc in rule.escalations:
                hit = any(g in hits for g in esc.groups) or (
                    esc.people_at_least is not None
                    and extracted.people is not None
                    and extracted.people >= esc.people_at_least
                )
                if hit and SEVERITIES.index(esc.to) > SEVERITIES.index(severity):
                    severity = esc.to
            results.append(RuleMatch(rule_id=rule.id, event=rule.event, severity=severity))
        return Verdict(relevant=True, matches=tuple(results), extracted=extracted), matched

    def _fails(self, rule: _Rule, scan: _Scan, tagset: frozenset[str]) -> str | None:
        """None when the rule matches the scanned item, else why not (one short phrase)."""
        hits = scan.hits
        if rule.langs and scan.lang not in rule.langs:
            return f"only for {', '.join(sorted(rule.langs))}"
        if rule.tags and not (rule.tags & tagset):
            return f"only for sources tagged {', '.join(sorted(rule.tags))}"
        if not hits.keys() >= rule.all_of_set:
            missing = [g for g in (*rule.all_of, *rule.context) if g not in hits]
            return "no " + ", no ".join(self._group_names.get(g, "?") for g in missing)
        blocking = [g for g in rule.none_of if g in hits]
        if blocking:
            return "excluded by " + self._describe(scan, blocking[0])
        return self._position_fails(rule, scan)

    def _position_fails(self, rule: _Rule, scan: _Scan) -> str | None:
        """The checks that need positions (`near`, sentence-scoped exclusions), once the set
        checks have passed: None when the rule matches, else why not."""
        hits = scan.hits
        # `near` over all hits first: when no window holds one hit of each group, no instance
        # can, and `_instance_fails` would give the same reason after a walk over every anchor.
        if rule.near_words is not None:
            if scan.is_cjk():
                positions = [hits[g] for g in rule.all_of]
                if not _within(positions, rule.near_chars or 0):
                    return f"terms more than {rule.near_chars} characters apart"
            else:
                positions = [scan.in_words(g) for g in rule.all_of]
                if not _within(positions, rule.near_words):
                    return f"terms more than {rule.near_words} words apart"
        if rule.none_in_sentence and any(g in hits for g in rule.none_in_sentence):
            return self._instance_fails(rule, scan)
        return None

    def _instance_fails(self, rule: _Rule, scan: _Scan) -> str | None:
        """With sentence-scoped exclusions: one hit of the first group, the nearest hit of each
        other group, within `near`, and no exclusion in the sentences they span."""
        hits = scan.hits
        excluded = sorted(p for g in rule.none_in_sentence for p in hits.get(g, ()))
        others = [sorted(hits[g]) for g in rule.all_of[1:]]
        reason = "cancelled in its sentence"
        for anchor in hits[rule.all_of[0]]:
            chosen = [anchor] + [_nearest(positions, anchor) for positions in others]
            lo, hi = min(chosen), max(chosen)
            if rule.near_words is not None:
                if scan.is_cjk():
                    if hi - lo > (rule.near_chars or 0):
                        reason = f"terms more than {rule.near_chars} characters apart"
                        continue
                elif scan.word_index(hi) - scan.word_index(lo) > rule.near_words:
                    reason = f"terms more than {rule.near_words} words apart"
                    continue
            start, end = scan.sentence(lo)[0], scan.sentence(hi)[1]
            k = bisect_right(excluded, start - 1)
            if k < len(excluded) and excluded[k] < end:
                groups = [g for g in rule.none_in_sentence if excluded[k] in hits.get(g, ())]
                reason = "cancelled in its sentence by " + self._describe(scan, groups[0])
                continue
            return None
        return reason

    def _describe(self, scan: _Scan, group: int) -> str:
        name = self._group_names.get(group, "?")
        spans = scan.spans.get(group)
        if spans:
            term = scan.norm[spans[0][0] : spans[0][0] + spans[0][1]]
            return f"{name} ({term!r})"
        return name

    def _scan(self, title: str, text: str, lang: str | None, *, spans: bool = False) -> _Scan:
        original = cased(f"{title}{_SEPARATOR}{text}" if text else title)
        # ASCII text (and the separator) case-folds as it lowercases, and that is quicker.
        norm = original.lower() if title.isascii() and text.isascii() else original.casefold()
        lang = (lang or detect_lang(norm) or "en").split("-")[0].lower()
        if lang == "zh":
            norm = fold_chinese(norm)
        # Acronym terms compare case on the original text, when positions line up.
        scan = _Scan(norm, lang, defaultdict(list))
        scan.aligned = original if len(original) == len(norm) else None
        automaton = self._automata.get(lang, self._automata.get(None))
        if automaton is None:
            return scan
        scan.found = automaton[0].find_matches_as_indexes(norm, overlapping=True)
        self._collect(scan, automaton, spans)
        return scan

    def _with_spans(self, scan: _Scan) -> _Scan:
        """The scan again with the spans of its hits, from what the automaton found in it."""
        again = _Scan(scan.norm, scan.lang, defaultdict(list))
        again.aligned, again.found, again.cjk = scan.aligned, scan.found, scan.cjk
        automaton = self._automata.get(scan.lang, self._automata.get(None))
        if automaton is not None:
            self._collect(again, automaton, True)
        return again

    def _collect(self, scan: _Scan, automaton: _Automaton, spans: bool) -> None:
        """The hits of every group, from the terms found (and with `spans` their spans)."""
        norm, aligned, hits, found = scan.norm, scan.aligned, scan.hits, scan.spans
        covering: list[tuple[int, int, int]] = []  # (start, end, group) of hiding hits
        after_end = len(norm) - 1
        words = _WORD_CHARS
        size = len(norm)
        _, values, simple, _ = automaton
        # The loop runs once per hit (tens per long article, all found in one call). Most terms
        # have no case to compare and no hits to hide (`_Simple`): a hit of one costs a boundary
        # check, when Latin, and an append per group.
        for index, start, stop in scan.found:
            one = simple[index]
            if one is not None:
                groups, boundary = one
                if boundary and (
                    (start and norm[start - 1] in words)
                    or (boundary == 2 and stop < size and norm[stop] in words)
                ):
                    continue
                for group in groups:
                    hits[group].append(start)
                if spans:
                    for group in groups:
                        found.setdefault(group, []).append((start, stop - start))
                continue
            length, groups, hiding, latin = values[index]
            end = stop - 1
            if latin:
                # Latin: starts a word; and ends one unless a prefix (boundary 1)
                if start > 0 and norm[start - 1] in words:
                    continue
                word_goes_on = end < after_end and norm[end + 1] in words
                for boundary, entry_groups, exact, hides in latin:
                    if boundary == 2 and word_goes_on:
                        continue
                    if exact is not None and aligned is not None:
                        if aligned[start : end + 1] != exact:
                            continue
                    if hides:
                        covering.extend((start, end, g) for g in entry_groups)
                    for group in entry_groups:
                        hits[group].append(start)
                        if spans:
                            found.setdefault(group, []).append((start, length))
                continue
            if hiding:
                covering.extend((start, end, g) for g in hiding)
            for group in groups:
                hits[group].append(start)
            if spans:
                for group in groups:
                    found.setdefault(group, []).append((start, length))
        if covering and self._hiding:
            self._hide(scan, covering)

    def _hide(self, scan: _Scan, covering: list[tuple[int, int, int]]) -> None:
        """Drop hits that start inside a longer hit of a concept that hides them
        (`not_inside`: 정부 inside 중국 정부 is China's government, not another)."""
        for group, hiders in self._hiding.items():
            positions = scan.hits.get(group)
            if not positions:
                continue
            spans = [(s, e) for s, e, g in covering if g in hiders]

            def inside(p: int, spans: list[tuple[int, int]] = spans) -> bool:
                return any(s <= p <= e for s, e in spans)

            kept = [p for p in positions if not inside(p)]
            if len(kept) == len(positions):
                continue
            if kept:
                scan.hits[group] = kept
            else:
                del scan.hits[group]
            if group in scan.spans:
                scan.spans[group] = [(p, n) for p, n in scan.spans[group] if not inside(p)]

    # ----------------------------------------------------------------------- explaining

    def explain(
        self,
        title: str,
        text: str = "",
        *,
        lang: str | None = None,
        tags: Iterable[str] = (),
        near_misses: bool = False,
        events: Iterable[str] | None = None,
    ) -> list[str]:
        """One line per rule that fired (✓), and with `near_misses` per rule that had a hit of
        its first group but did not fire (✗, with why): the terms found and their positions."""
        scan = self._scan(title, text, lang, spans=True)
        tagset = frozenset(tags)
        lines = []
        wanted = None if events is None else frozenset(events)
        for rule in self._rules:
            if wanted is not None and rule.event not in wanted:
                continue
            if not any(g in scan.hits for g in rule.all_of):
                continue
            why_not = self._fails(rule, scan, tagset)
            if why_not is not None and not near_misses:
                continue
            found = "; ".join(self._terms(scan, g) for g in rule.all_of if g in scan.hits)
            mark = "✓" if why_not is None else "✗"
            tail = "" if why_not is None else f"  — {why_not}"
            lines.append(f"{mark} {rule.id} ({rule.event}): {found}{tail}")
        return lines

    def why(self, title: str, text: str = "", *, lang: str | None = None) -> dict[str, str]:
        """Rule id → one line saying why it fired, with glosses for non-English terms:
        "강제북송 (forced repatriation) near 탈북민 (North Korean escapees)"."""
        scan = self._scan(title, text, lang, spans=True)
        out: dict[str, str] = {}
        for rule in self._rules:
            if not scan.hits.keys() >= rule.all_of_set:
                continue
            if self._fails(rule, scan, frozenset(rule.tags)) is not None:
                continue
            out[rule.id] = self._why_line(scan, rule)
        return out

    def _why_line(self, scan: _Scan, rule: _Rule) -> str:
        """Why a rule fired on a scanned item (scanned with spans): one term of each group."""
        parts = []
        for g in rule.all_of:
            start, length = scan.spans[g][0]
            term = _whole_word(scan.norm, start, length)
            gloss = self._glosses.get(g)
            parts.append(f"{term} ({gloss})" if gloss and not term.isascii() else term)
        return " near ".join(parts) if rule.near_words else " + ".join(parts)

    def _terms(self, scan: _Scan, group: int) -> str:
        seen: dict[str, list[int]] = {}
        for start, length in scan.spans.get(group, ()):
            seen.setdefault(_whole_word(scan.norm, start, length), []).append(start)
        found = ", ".join(
            f"{term!r}@{','.join(map(str, pos[:3]))}" for term, pos in list(seen.items())[:4]
        )
        return f"{self._group_names.get(group, '?')}={found}"


def publication_day(published: date, lang: str) -> date:
    """The calendar day an item was published on where it was written: an aware time is read
    in its language's usual zone (Seoul, Tokyo, Shanghai; else UTC), so a Korean report of
    08:00 KST on the 20th (23:00 UTC on the 19th) says 어제 of the 19th."""
    if not isinstance(published, datetime):
        return published
    if published.tzinfo is None:
        return published.date()
    return published.astimezone(ZoneInfo(DEFAULT_ZONE_BY_LANG.get(lang, "UTC"))).date()


def _nearest(positions: list[int], target: int) -> int:
    """The position in a sorted, non-empty list closest to `target`."""
    k = bisect_right(positions, target)
    if k == 0:
        return positions[0]
    if k == len(positions):
        return positions[-1]
    before, after = positions[k - 1], positions[k]
    return before if target - before <= after - target else after


def _whole_word(norm: str, start: int, length: int) -> str:
    """The text a hit covers, run on to the end of its word for a Latin prefix term
    (`repatriat*` found in "repatriated" reads "repatriated")."""
    end = start + length
    if norm[start:end].isascii():
        while end < len(norm) and norm[end] in _WORD_CHARS:
            end += 1
    return norm[start:end]


def _is_acronym(term: str) -> bool:
    """UN, UPR, U.N., UNHCR: two or more letters, all capitals."""
    letters = [c for c in term if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def _within(positions: list[list[int]], window: int) -> bool:
    """Is there one position per list with max - min <= window? (a minimum covering window)"""
    if len(positions) < 2:
        return True
    if len(positions) == 2:  # one position of each list at most `window` apart
        few, many = sorted(positions, key=len)
        many = sorted(many)
        count = len(many)
        for p in few:
            k = bisect_left(many, p - window)
            if k < count and many[k] <= p + window:
                return True
        return False
    return _covering(positions, window)


def _covering(positions: list[list[int]], window: int) -> bool:
    """`_within` for any number of lists: the shortest window holding one of each."""
    merged = sorted((p, k) for k, plist in enumerate(positions) for p in plist)
    need = len(positions)
    counts = [0] * need
    covered = 0
    left = 0
    for pos, k in merged:
        if counts[k] == 0:
            covered += 1
        counts[k] += 1
        while covered == need:
            if pos - merged[left][0] <= window:
                return True
            lk = merged[left][1]
            counts[lk] -= 1
            if counts[lk] == 0:
                covered -= 1
            left += 1
    return False


# --------------------------------------------------------------------------- compiling


def compile_rules(config: Config, *, check_examples: bool = True) -> Matcher:
    """Compile the enabled rules; with `check_examples`, raise RuleError when a rule does not
    match one of its `match` examples or matches one of its `no_match` examples."""
    groups: dict[Any, int] = {}
    names: dict[int, str] = {}
    glosses: dict[int, str] = {}
    #: Group → concepts whose longer terms hide its terms (`not_inside`), resolved below.
    hidden_by: dict[int, tuple[Any, ...]] = {}
    # (prefix, latin, language or None for any, cased form for acronyms or None)
    Variant = tuple[bool, bool, str | None, str | None]
    terms: dict[str, dict[Variant, set[int]]] = defaultdict(lambda: defaultdict(set))

    def group_of(ref: Any) -> int:
        key: Any
        by_lang: dict[str | None, Iterable[str]]
        if isinstance(ref, str):
            key = ("concept", ref)
            by_lang = dict(config.concepts[ref].items())
        elif isinstance(ref, dict):
            key = ("inline", tuple(sorted((k, tuple(v)) for k, v in ref.items())))
            by_lang = dict(ref.items())
        else:
            key = ("inline", tuple(ref))
            by_lang = {None: ref}
        if key in groups:
            return groups[key]
        gid = groups[key] = len(groups)
        names[gid] = (
            ref
            if isinstance(ref, str)
            else "[" + ", ".join(t for ts in by_lang.values() for t in ts)[:40] + "]"
        )
        if GLOSS in by_lang:
            glosses[gid] = next(iter(by_lang.pop(GLOSS)))
        if NOT_INSIDE in by_lang:
            hidden_by[gid] = tuple(by_lang.pop(NOT_INSIDE))
        for lang, raws in by_lang.items():
            scope = None if lang is None or lang == "any" else lang.split("-")[0].lower()
            for raw in raws:
                prefix = raw.rstrip().endswith("*")
                bare = cased(raw.rstrip().rstrip("*"))
                term = bare.casefold()
                if not term:
                    continue
                latin = bool(_LATIN_WORD.search(term)) and not _CJK.search(term)
                # An acronym (UN, UPR, U.N.) matches only in capitals: "Un" in Kim Jong Un
                # is not the UN.
                exact = bare if latin and _is_acronym(bare) else None
                for variant in {term, fold_chinese(term)} if scope in (None, "zh") else {term}:
                    terms[variant][(prefix, latin, scope, exact)].add(gid)
        return gid

    compiled: list[_Rule] = []
    for rule in config.rules:
        if not rule.enabled:
            continue
        compiled.append(
            _Rule(
                id=rule.id,
                event=rule.event,
                severity=rule.severity,
                all_of=tuple(group_of(g) for g in rule.all_of),
                none_of=tuple(group_of(g) for g in rule.none_of),
                none_in_sentence=tuple(group_of(g) for g in rule.none_in_sentence),
                context=tuple(group_of(g) for g in rule.context),
                near_words=rule.near.words if rule.near else None,
                near_chars=rule.near.chars if rule.near else None,
                escalations=tuple(
                    _Escalation(
                        to=e.to,
                        groups=tuple(group_of(g) for g in e.any_of),
                        people_at_least=e.people_at_least,
                    )
                    for e in rule.escalate
                ),
                tags=frozenset(rule.tags),
                langs=frozenset(rule.langs),
            )
        )
        last = compiled[-1]
        compiled[-1] = replace(
            last,
            all_of_set=frozenset(last.all_of + last.context),
            none_of_set=frozenset(last.none_of),
        )
    # Resolve `not_inside`: the hiding concepts become groups too (their hits must be found).
    hiding = {gid: tuple(group_of(name) for name in names_) for gid, names_ in hidden_by.items()}
    hiders = frozenset(h for hs in hiding.values() for h in hs)
    languages = {scope for variants in terms.values() for (_, _, scope, _) in variants}
    automata: dict[str | None, _Automaton] = {}
    for language in languages | {None}:
        found_terms: dict[str, _Term] = {}
        for term, variants in terms.items():
            entries = tuple(
                (
                    (1 if prefix else 2) if latin else 0,
                    tuple(sorted(gids)),
                    exact,
                    bool(gids & hiders),
                )
                for (prefix, latin, scope, exact), gids in sorted(
                    variants.items(),
                    key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "", kv[0][3] or ""),
                )
                if scope is None or scope == language
            )
            if entries:
                found_terms[term] = _term(len(term), entries)
        if found_terms:
            automata[language] = _automaton(found_terms)
    by_first: dict[int, list[int]] = defaultdict(list)
    for index, compiled_rule in enumerate(compiled):
        by_first[compiled_rule.all_of[0]].append(index)
    matcher = Matcher(
        automata,
        tuple(compiled),
        {g: tuple(r) for g, r in by_first.items()},
        names,
        glosses,
        hiding,
    )
    if check_examples:
        problems = check_examples_of(config.rules, matcher)
        if problems:
            raise RuleError(problems)
    return matcher


#: A term's automaton value: (length, groups, hiding groups, Latin entries). A term without
#: Latin letters matches anywhere, so its entries merge into `groups` (in entry order, repeats
#: kept) and `hiding` (those of entries whose groups hide others); a Latin term keeps one
#: entry (boundary 1 prefix or 2 whole word, groups, exact case or None, hides) per variant.
_Term = tuple[
    int, tuple[int, ...], tuple[int, ...], tuple[tuple[int, tuple[int, ...], Any, bool], ...]
]


def _term(length: int, entries: tuple[tuple[int, tuple[int, ...], Any, bool], ...]) -> _Term:
    if entries[0][0]:  # Latin letters: boundaries and case are checked per entry
        return (length, (), (), entries)
    groups = tuple(g for _, gs, _, _ in entries for g in gs)
    hiding = tuple(g for _, gs, _, hides in entries if hides for g in gs)
    return (length, groups, hiding, ())


#: A term with no case to compare and no hits to hide: (groups, boundary), the boundary 0 for
#: a term without Latin letters, 1 for a Latin prefix, 2 for a whole word.
_Simple = tuple[tuple[int, ...], int]
#: An automaton over terms; by a term's index its value (`_Term`), its `_Simple` form or None,
#: and the term itself.
_Automaton = tuple[
    ahocorasick_rs.AhoCorasick, tuple[_Term, ...], tuple[_Simple | None, ...], tuple[str, ...]
]


def _simple(term: _Term) -> _Simple | None:
    _, groups, hiding, latin = term
    if not latin:
        return None if hiding else (groups, 0)
    if len(latin) == 1:
        boundary, entry_groups, exact, hides = latin[0]
        if exact is None and not hides:
            return (entry_groups, boundary)
    return None


#: Up to this many terms an automaton is built as a DFA: a third quicker to run than the
#: library's default on the shipped rules' few hundred terms (10 ms to build); with thousands
#: of terms, as quick as the default once the hits dominate, and ~90 ms to build instead of 10.
_DFA_TERMS = 2000


def _automaton(terms: dict[str, _Term]) -> _Automaton:
    """One Aho-Corasick automaton over `terms` that returns every hit of a text, overlapping
    ones too, in one call: in order of their end, the longest first at one end."""
    ordered = sorted(terms)
    finder = ahocorasick_rs.AhoCorasick(
        ordered,
        store_patterns=False,
        implementation=ahocorasick_rs.Implementation.DFA if len(ordered) <= _DFA_TERMS else None,
    )
    values = tuple(terms[term] for term in ordered)
    return finder, values, tuple(map(_simple, values)), tuple(ordered)


def check_examples_of(
    rules: Sequence[Rule], matcher: Matcher
) -> list[tuple[tuple[str | int, ...], str]]:
    """(path, message) for every example its rule gets wrong. Examples ignore tag filters."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for index, rule in enumerate(rules):
        if not rule.enabled:
            continue
        for kind, expected in (("match", True), ("no_match", False)):
            for n, example in enumerate(getattr(rule.examples, kind)):
                got = rule.id in _rules_ignoring_tags(matcher, example, rule)
                if got != expected:
                    verb = "does not match" if expected else "matches"
                    problems.append(
                        (
                            ("rules", index, "examples", kind, n),
                            f"rule {rule.id!r} {verb} its {kind} example {example[:80]!r}",
                        )
                    )
    return problems


def _rules_ignoring_tags(matcher: Matcher, text: str, rule: Rule) -> tuple[str, ...]:
    lang = next(iter(rule.langs), None) if rule.langs else None
    return matcher.match(text, lang=lang, tags=rule.tags).rules
