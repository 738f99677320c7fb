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
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import ahocorasick

from watcher.config import SEVERITIES, Config, Rule
from watcher.extract import Extracted, extract
from watcher.items import detect_lang

_FOLD = re.compile(r"[\s\-\u2010-\u2015\u2212\u00b7\u30fb_/]+")
_CJK = re.compile(
    r"[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff]"
)
_LATIN_WORD = re.compile(r"[0-9A-Za-z\u00c0-\u024f]")
#: Joins title and text: no term spans it.
_SEPARATOR = " \u2016 "


def normalize(text: str) -> str:
    """NFKC, case-folded, dashes/underscores/slashes and whitespace runs folded to a space."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    return _FOLD.sub(" ", text).strip()


def is_cjk_text(text: str) -> bool:
    """True when most letters are Hangul, kana or Han: proximity then counts characters."""
    sample = text[:2000]
    cjk = len(_CJK.findall(sample))
    latin = len(_LATIN_WORD.findall(sample))
    return cjk > latin / 4


#: Characters that continue a Latin-script word (text is case-folded: lowercase only).
_WORD_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyz0123456789" + "".join(chr(c) for c in range(0xC0, 0x250))
)


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
    all_of_set: frozenset[int] = frozenset()
    none_of_set: frozenset[int] = frozenset()


class RuleError(Exception):
    """Rule examples that fail: (path in the file, message) each."""

    def __init__(self, problems: Sequence[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(m for _, m in problems))
        self.problems = list(problems)


class Matcher:
    """The compiled rules. Build with `compile_rules`; `match` is pure and thread-safe."""

    def __init__(
        self,
        automata: dict[str | None, Any],
        rules: tuple[_Rule, ...],
        by_first_group: dict[int, tuple[int, ...]],
    ) -> None:
        #: One automaton per language with terms (its own and `any:` terms); None: the
        #: `any:` terms alone, for the other languages. A Korean item never pays for
        #: hits of English terms.
        self._automata = automata
        self._rules = rules
        self._by_first_group = by_first_group

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
    ) -> Verdict:
        norm = normalize(f"{title}{_SEPARATOR}{text}" if text else title)
        lang = (lang or detect_lang(norm) or "en").split("-")[0].lower()
        hits = self._hits(norm, lang)
        if not hits:
            return NOT_RELEVANT
        candidates: set[int] = set()
        for group in hits:
            candidates.update(self._by_first_group.get(group, ()))
        if not candidates:
            return NOT_RELEVANT
        tagset = frozenset(tags)
        cjk: bool | None = None
        word_starts: list[int] | None = None
        matched: list[tuple[_Rule, int]] = []
        for index in sorted(candidates):
            rule = self._rules[index]
            if rule.langs and lang not in rule.langs:
                continue
            if rule.tags and not (rule.tags & tagset):
                continue
            if not rule.all_of_set <= hits.keys():
                continue
            if not rule.none_of_set.isdisjoint(hits):
                continue
            if rule.near_words is not None:
                if cjk is None:
                    cjk = lang in ("ko", "zh", "ja") or is_cjk_text(norm)
                if cjk:
                    positions = [hits[g] for g in rule.all_of]
                    if not _within(positions, rule.near_chars or 0):
                        continue
                else:
                    if word_starts is None:
                        word_starts = [m.start() for m in re.finditer(r" ", norm)]
                    positions = [
                        [bisect_right(word_starts, p) for p in hits[g]] for g in rule.all_of
                    ]
                    if not _within(positions, rule.near_words):
                        continue
            matched.append((rule, index))
        if not matched:
            return NOT_RELEVANT
        extracted = extract(norm, lang=lang, published_year=published_year)
        results = []
        for rule, _ in matched:
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
        return Verdict(relevant=True, matches=tuple(results), extracted=extracted)

    def _hits(self, norm: str, lang: str) -> dict[int, list[int]]:
        """Group id → start offsets of its terms' hits in the normalised text."""
        hits: defaultdict[int, list[int]] = defaultdict(list)
        automaton = self._automata.get(lang, self._automata.get(None))
        if automaton is None:
            return hits
        after_end = len(norm) - 1
        words = _WORD_CHARS
        for end, entries in automaton.iter(norm):
            for length, boundary, groups in entries:
                start = end - length + 1
                if boundary:  # Latin: starts a word; and ends one unless a prefix (boundary 2)
                    if start > 0 and norm[start - 1] in words:
                        continue
                    if boundary == 2 and end < after_end and norm[end + 1] in words:
                        continue
                for group in groups:
                    hits[group].append(start)
        return hits


def _within(positions: list[list[int]], window: int) -> bool:
    """Is there one position per list with max - min <= window? (a minimum covering window)"""
    if len(positions) < 2:
        return True
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
    Variant = tuple[bool, bool, str | None]  # (prefix, latin, language or None for any)
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
        for lang, raws in by_lang.items():
            scope = None if lang in (None, "any") else lang.split("-")[0].lower()
            for raw in raws:
                prefix = raw.rstrip().endswith("*")
                term = normalize(raw.rstrip().rstrip("*"))
                if not term:
                    continue
                latin = bool(_LATIN_WORD.search(term)) and not _CJK.search(term)
                terms[term][(prefix, latin, scope)].add(gid)
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
            last, all_of_set=frozenset(last.all_of), none_of_set=frozenset(last.none_of)
        )
    languages = {scope for variants in terms.values() for (_, _, scope) in variants}
    automata: dict[str | None, Any] = {}
    for language in languages | {None}:
        automaton = ahocorasick.Automaton()
        for term, variants in terms.items():
            entries = tuple(
                (len(term), (1 if prefix else 2) if latin else 0, tuple(sorted(gids)))
                for (prefix, latin, scope), gids in sorted(
                    variants.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")
                )
                if scope is None or scope == language
            )
            if entries:
                automaton.add_word(term, entries)
        if len(automaton):
            automaton.make_automaton()
            automata[language] = automaton
    by_first: dict[int, list[int]] = defaultdict(list)
    for index, rule in enumerate(compiled):
        by_first[rule.all_of[0]].append(index)
    matcher = Matcher(automata, tuple(compiled), {g: tuple(r) for g, r in by_first.items()})
    if check_examples:
        problems = check_examples_of(config.rules, matcher)
        if problems:
            raise RuleError(problems)
    return matcher


def check_examples_of(
    rules: Sequence[Rule], matcher: Matcher
) -> list[tuple[tuple[str | int, ...], str]]:
    """(path, message) for every example its rule gets wrong. Examples ignore tag filters."""
    problems = []
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
