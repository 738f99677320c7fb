"""sources.yaml → a validated, frozen `Config`; the only place that reads YAML.

Every problem in the file is reported, each on one line, as
``FILE:LINE: PATH: what is wrong (what was expected)``, e.g.::

    sources.yaml:42: sources[3].interval: expected a duration like 15m, got 'often'

Values may name environment variables as ``${VAR}`` or ``${VAR:-default}`` (write ``$${`` for a
literal ``${``). Substitution happens after YAML parsing, inside string values only, so a value
from the environment can never change the structure of the file. Values that came from the
environment are collected in `Config.secrets` so that logging can redact them. A source's
url keeps its written form too (`source.written_url`, `${VAR}` unexpanded): the database stores
that, and only fetching uses the expanded `source.url`.

Usage::

    config = load_config("sources.yaml")          # raises ConfigError listing every problem
    for source in config.sources: ...

Once the schema holds, every name a route uses is checked against what exists (`Names`): an
event no rule reports, a tag no source carries or a language nothing can produce is an error
with a did-you-mean, as is a route that can never fire. `watcher check`, `watcher run` and a
SIGHUP reload all load through here, so all of them refuse such a file. What needs no valid
whole (a route's locale, a concept's country code, the `checks` given) is checked on the entries
that are valid alone even when the schema does not hold, so that one run lists it; what waits
is said in `ConfigError.waiting`.

Imports only the models beside it and `watcher.errors`.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Union, cast

import yaml
from pydantic import (
    BaseModel,
    TypeAdapter,
    ValidationError,
)

from watcher.config.models import (
    COUNTRY_FOR_LANG,
    EVENT_TYPES,
    GLOSS,
    LOCALES,
    NOT_INSIDE,
    SEVERITIES,
    SOURCE_KINDS,
    Channel,
    Config,
    LocatedError,
    ReferenceProblem,
    Route,
    Rule,
    Settings,
    Source,
    format_duration,
    reference_problems,
    short,
)
from watcher.errors import ConfigError


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config plus what the loader learnt about the file."""

    config: Config
    path: str
    #: Values substituted from the environment: logging redacts them.
    secrets: frozenset[str] = frozenset()
    #: Non-fatal problems, formatted like errors.
    warnings: tuple[str, ...] = ()
    lines: Mapping[tuple[str | int, ...], int] = field(default_factory=dict, repr=False)

    def problem(self, path: tuple[str | int, ...], message: str) -> str:
        """`file:line: path: message`, like every other configuration error."""
        return _fmt(self.path, self.lines, path, message)

    @property
    def names(self) -> Names:
        """The sources, events, tags, languages… this configuration knows."""
        return Names.of(self.config)


#: Further checks of a config, run with the loader's own last ones so that one run lists
#: every problem: (path, message) each (`watcher check` passes the costly ones: CSS selectors,
#: apprise URLs, the operator's templates). An invalid file's config holds only its entries that
#: are valid alone, and no reference between sections holds in it.
Checks = Callable[[Config], list[tuple[tuple[str | int, ...], str]]]


def load_config(
    path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    *,
    checks: Checks | None = None,
) -> LoadedConfig:
    """Read and validate a sources.yaml; raise ConfigError with every problem found."""
    env = os.environ if env is None else env
    return load_config_text(_read(path), str(path), env, checks=checks)


def load_rules(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> LoadedConfig:
    """A file with `concepts` and `rules` (its `sources`, if any, are ignored)."""
    env = os.environ if env is None else env
    return load_config_text(_read(path, "--rules"), str(path), env, rules_only=True)


def _read(path: str | os.PathLike[str], option: str = "--config") -> str:
    """The file's text; a ConfigError of one line when it cannot be read (a missing file
    names the option that gives another)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file (give another with {option})"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([_not_utf8(exc, str(path))]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc}"]) from None


def _not_utf8(exc: UnicodeDecodeError, name: str) -> str:
    """Where a file that is not UTF-8 (Latin-1, Windows-1252: `Café` saved by an old editor)
    has its first byte that UTF-8 cannot read, and what to do."""
    body = exc.object if isinstance(exc.object, bytes) else bytes(exc.object)
    line = body.count(b"\n", 0, exc.start) + 1
    column = exc.start - (body.rfind(b"\n", 0, exc.start) + 1) + 1
    byte = body[exc.start : exc.start + 1].hex()
    return (
        f"{name}:{line}: cannot read: byte 0x{byte} at column {column} is not UTF-8 (save the "
        "file as UTF-8)"
    )


def load_config_text(
    text: str,
    name: str,
    env: Mapping[str, str],
    *,
    rules_only: bool = False,
    checks: Checks | None = None,
) -> LoadedConfig:
    lines: dict[tuple[str | int, ...], int] = {}
    #: Plain (unquoted) scalars that YAML read as something other than text: `off` → false,
    #: `9:30` → 570. Kept so that "expected text" can say to quote them.
    plain: dict[tuple[str | int, ...], str] = {}
    duplicates: list[str] = []

    def duplicate(path: tuple[str | int, ...], message: str) -> None:
        duplicates.append(_fmt(name, lines, path, message))

    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            # before construction, which folds `<<: *anchor` merges into the mapping (a key
            # that overrides a merged one would look written twice)
            _index_lines(node, (), lines, plain, duplicate)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc, name, text)]) from None
    finally:
        loader.dispose()
    if duplicates:
        raise ConfigError(duplicates)
    if not isinstance(data, dict):
        raise ConfigError([f"{name}:1: expected a mapping with a 'sources' list at the top"])
    if rules_only:
        data = {"sources": [], **{k: v for k, v in data.items() if k in ("concepts", "rules")}}

    unset: list[tuple[tuple[str | int, ...], str]] = []  # (path, variable)
    secrets: set[str] = set()
    written = data
    data = _substitute(data, (), env, secrets, lambda p, var: unset.append((p, var)))
    # A variable that is not set is one problem; the rest of the file is still checked, so
    # that one run lists everything (what the empty value would break is not told again).
    problems = [
        _fmt(
            name,
            lines,
            p,
            f"environment variable {var} is empty (give it a value, or write ${{{var}:-default}})"
            if var in env
            else f"environment variable {var} is not set (set it, or write ${{{var}:-default}})",
        )
        for p, var in unset
    ]
    skip = {p for p, _ in unset}
    # Between sections (a rule's unknown concept, a route's unknown channel, a duplicate id):
    # found in the data as written, so that they are listed with the fields' own problems
    # (which stop pydantic before the model's checks run).
    problems += [
        _fmt(name, lines, path, message)
        for path, message in reference_problems(data)
        if not any(path[: len(p)] == p for p in skip)
    ]
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += _format_validation(exc, name, lines, data, plain, skip)
    if problems:
        # What does not depend on the rest being valid is checked on the parts that are valid
        # alone (a source whose only fault is its interval still has its selectors read), so
        # that one run lists it too.
        partial, at_in_file = _valid_parts(data)
        found_now = [*_own_route_problems(partial), *_concept_lang_problems(partial)]
        found_now += [(p, p, m) for p, m in (checks(partial) if checks else ())]
        for shown, line_at, message in found_now:
            shown, line_at = at_in_file(shown), at_in_file(line_at)
            if not any(shown[: len(p)] == p for p in skip):
                problems.append(f"{name}:{_line_for(lines, line_at)}: {_display(shown)}: {message}")
        at = len(name) + 1  # each problem starts "name:line:"
        problems.sort(key=lambda problem: int(problem[at:].split(":", 1)[0]))
        raise ConfigError(
            _redacted(list(dict.fromkeys(problems)), secrets),
            unset=[var for _, var in unset],
            waiting=_waiting(data),
        )
    _keep_written_urls(config, written.get("sources"), env)
    found = [*_route_problems(config, Names.of(config)), *_concept_lang_problems(config)]
    found += [(path, path, message) for path, message in (checks(config) if checks else ())]
    if found:
        found.sort(key=lambda problem: _line_for(lines, problem[1]))
        raise ConfigError(
            _redacted(
                [
                    f"{name}:{_line_for(lines, line_at)}: {_display(shown)}: {message}"
                    for shown, line_at, message in found
                ],
                secrets,
            )
        )
    warnings = _redacted(_short_intervals(config, name, lines), secrets)
    return LoadedConfig(
        config=config, path=name, secrets=frozenset(secrets), warnings=tuple(warnings), lines=lines
    )


#: The lists of the file whose entries are checked one by one when the whole is invalid.
_PARTS: dict[str, TypeAdapter[Any]] = {
    "rules": TypeAdapter(Rule),
    "channels": TypeAdapter(Channel),
    "routes": TypeAdapter(Route),
}
_SETTINGS: TypeAdapter[Settings] = TypeAdapter(Settings)


def _valid_parts(
    data: Any,
) -> tuple[Config, Callable[[tuple[str | int, ...]], tuple[str | int, ...]]]:
    """The parts of an invalid file that are valid alone, as a Config that was never validated
    as a whole (no reference between sections holds in it), and how a path in it reads in the
    file (its lists hold only the valid entries). An entry loses the keys that are wrong and is
    kept when the rest of it is valid: a source whose interval is wrong still has selectors."""
    data = data if isinstance(data, dict) else {}
    kept: dict[str, list[int]] = {}
    parts: dict[str, Any] = {}
    for section in ("sources", *_PARTS):
        entries = data.get(section)
        kept[section], valid = [], []
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            if section == "sources" and isinstance(entry, dict):
                kind = entry.get("kind")
                if kind not in SOURCE_KINDS:
                    entry = {**entry, "kind": meant_kind(entry) or "feed"}
            part = _valid_alone(_SOURCE if section == "sources" else _PARTS[section], entry)
            if part is not None:
                kept[section].append(index)
                valid.append(part)
        parts[section] = tuple(valid)
    settings = _valid_alone(_SETTINGS, data.get("settings", {}))
    concepts = data.get("concepts")
    config = Config.model_construct(
        **parts,
        # only their languages are looked at: the keys of each concept
        concepts={
            k: v for k, v in (concepts or {}).items() if isinstance(k, str) and isinstance(v, dict)
        }
        if isinstance(concepts, dict)
        else {},
        settings=settings if settings is not None else Settings(),
    )

    def in_file(path: tuple[str | int, ...]) -> tuple[str | int, ...]:
        if len(path) > 1 and path[0] in kept and isinstance(path[1], int):
            return (path[0], kept[str(path[0])][path[1]], *path[2:])
        return path

    return config, in_file


def _valid_alone(adapter: TypeAdapter[Any], value: Any) -> Any:
    """`value` validated by `adapter` once every part pydantic refuses is taken out of it
    (a wrong value; the mapping that lacks a required key); None when nothing valid is left."""
    value = copy.deepcopy(value)
    for _ in range(100):  # each round takes something out: a file's entry has a bounded size
        try:
            return adapter.validate_python(value)
        except ValidationError as exc:
            errors = exc.errors()
        for error in errors:
            path = _data_path(tuple(error["loc"]), value)
            if not _take_out(value, path):
                return None
    return None


def _take_out(value: Any, path: tuple[str | int, ...]) -> bool:
    """Remove what `path` points at in `value` (the mapping holding it, when it is a missing
    key); False when that would be `value` itself."""
    *parents, last = path or (None,)
    if last is None:
        return False
    node = value
    for part in parents:  # a path from `_data_path`: each part is in the data
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int):
            node = node[part]
    if isinstance(node, dict) and last in node:
        del node[last]
        return True
    if isinstance(node, list) and isinstance(last, int) and 0 <= last < len(node):
        del node[last]
        return True
    return _take_out(value, tuple(parents))


def _waiting(data: Any) -> tuple[str, ...]:
    """The checks of an invalid file that wait until it is valid: what a route names is
    compared with what the rules and sources define (a rule that is invalid would make its
    event look unknown), and the rules' examples are tried on the compiled rules."""
    data = data if isinstance(data, dict) else {}
    routes = data.get("routes")
    rules = data.get("rules")
    story_routes = sum(
        1 for r in (routes if isinstance(routes, list) else []) if not _get_key(r, "ops")
    )
    with_examples = sum(
        1 for r in (rules if isinstance(rules, list) else []) if _get_key(r, "examples")
    )
    out = []
    if story_routes:
        out.append(
            f"the events, tags, languages and severity of {story_routes} "
            f"route{'s' if story_routes != 1 else ''} against the rules and sources"
        )
    if with_examples:
        out.append(f"the examples of {with_examples} rule{'s' if with_examples != 1 else ''}")
    return tuple(out)


def _get_key(entry: Any, key: str) -> Any:
    return entry.get(key) if isinstance(entry, dict) else None


def _redacted(problems: list[str], secrets: set[str]) -> list[str]:
    """Problems with every value that came from the environment shown as `***`: a message
    quoting a url or a channel must not print the key it carries (as the log never does)."""
    out = []
    for problem in problems:
        for secret in sorted(secrets, key=len, reverse=True):
            problem = problem.replace(secret, "***")
            if len(secret) > 20 and "..." in problem:
                # a long value is shown cut short (`short`): its beginning is secret too
                for cut in range(len(secret) - 1, 19, -1):
                    if secret[:cut] + "..." in problem:
                        problem = problem.replace(secret[:cut] + "...", "***")
                        break
        out.append(problem)
    return out


#: What YAML says when a line is indented wrongly (one space too few or too many).
_INDENTATION = (
    "did not find expected key",
    "did not find expected '-' indicator",
    "mapping values are not allowed here",
    "expected <block end>",
)


def _yaml_problem(exc: yaml.YAMLError, name: str, text: str = "") -> str:
    """One line for a file YAML cannot read: where it noticed, what, and where the construct
    it was reading began when that is elsewhere (an unclosed quote is noticed lines later);
    with what to do when that is clear (a tab, a line indented wrongly)."""
    mark = getattr(exc, "problem_mark", None)
    line = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    written = text.splitlines()
    at = written[mark.line] if mark is not None and mark.line < len(written) else ""
    if "tab character" in problem or "\t" in at[: len(at) - len(at.lstrip())]:
        return (
            f"{name}{line}: invalid YAML: a tab character where YAML expects spaces (replace "
            "the tab with spaces: YAML indents with spaces only)"
        )
    start = getattr(exc, "context_mark", None)
    context = getattr(exc, "context", None)
    if (
        start is not None
        and context
        and "quoted scalar" in context
        and (mark is None or start.line != mark.line)
    ):
        # Noticed lines later (often past the last line): the line to fix is where it opens.
        noticed = (
            "YAML read to the end of the file for its closing quote"
            if "end of stream" in problem
            else f"YAML noticed at line {mark.line + 1 if mark else '?'}: {problem}"
        )
        opens = "a quoted value opens here and is not closed"
        return f"{name}:{start.line + 1}: invalid YAML: {opens} ({noticed})"
    if start is not None and context and (mark is None or start.line != mark.line):
        problem += f" ({context} that starts at line {start.line + 1})"
    if mark is not None and problem.startswith(_INDENTATION):
        problem += f": {_indentation_hint(text, mark.line)}"
    return f"{name}{line}: invalid YAML: {problem}"


def _indentation_hint(text: str, index: int) -> str:
    """What to look at for a line YAML cannot place (`index` counts from 0): its indentation
    against the line above it, when they differ."""
    lines = text.splitlines()
    if not 0 <= index < len(lines):
        return f"check the indentation of line {index + 1} and of the lines above it"
    indent = len(lines[index]) - len(lines[index].lstrip(" "))
    above = next(
        (
            (n, line)
            for n, line in reversed(list(enumerate(lines[:index])))
            if line.strip() and not line.lstrip().startswith("#")
        ),
        None,
    )
    if above is None:
        return f"check the indentation of line {index + 1}"
    n, line = above
    indent_above = len(line) - len(line.lstrip(" "))
    if indent == indent_above:
        return f"check the indentation of line {index + 1} and of the lines above it"
    return (
        f"line {index + 1} is indented {_spaces(indent)}, line {n + 1} above it "
        f"{_spaces(indent_above)}: line it up with the lines it belongs with"
    )


def _spaces(count: int) -> str:
    return f"{count} space{'s' if count != 1 else ''}"


def daemon_settings(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> tuple[str | None, str | None, tuple[str, ...]]:
    """(settings.state_dir, settings.database_url, the variables in them that are not set),
    as the file writes them with `${VAR}`s expanded (an unset one as empty); None for a key it
    does not set. The rest of the file is not read: `watcher reload` needs only where the
    daemon keeps its PID, and the daemon's variables (passwords, API keys) are often set in its
    environment alone. A PostgreSQL PID file is named without the password, so an unset
    password still finds it."""
    text = _read(path)
    try:
        data = yaml.load(text, Loader=_Loader)  # _Loader: (C)SafeLoader
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc, str(path), text)]) from None
    settings = data.get("settings") if isinstance(data, dict) else None
    if not isinstance(settings, dict):
        return None, None, ()
    unset: list[str] = []
    found: list[str | None] = []
    for key in ("state_dir", "database_url"):
        value = settings.get(key)
        if isinstance(value, str):
            value = _substitute(
                value,
                ("settings", key),
                os.environ if env is None else env,
                set(),
                lambda _path, var: unset.append(var),
            )
        found.append(value if isinstance(value, str) else None)
    return found[0], found[1], tuple(unset)


#: Sources polled more often than this may be blocked by their outlets: a warning.
SHORT_INTERVAL = timedelta(minutes=5)
#: More sources than this with a short interval are told in one line, not one line each.
SHORT_TOLD_EACH = 3


def _short_intervals(
    config: Config, name: str, lines: Mapping[tuple[str | int, ...], int]
) -> list[str]:
    """One warning per source polled more often than every 5 minutes; when there are more
    than SHORT_TOLD_EACH, one line for all of them (where the first is, how many, which)."""
    short = [(i, s) for i, s in enumerate(config.sources) if s.interval < SHORT_INTERVAL]
    if len(short) <= SHORT_TOLD_EACH:
        return [
            _fmt(
                name,
                lines,
                ("sources", i, "interval"),
                f"interval {format_duration(s.interval)} is under 5m: outlets may block "
                "frequent polling",
            )
            for i, s in short
        ]
    i = short[0][0]
    ids = ", ".join(s.id for _, s in short[:SHORT_TOLD_EACH])
    fastest = min(s.interval for _, s in short)
    return [
        _fmt(
            name,
            lines,
            ("sources", i, "interval"),
            f"{len(short)} sources have an interval under 5m (the shortest "
            f"{format_duration(fastest)}; {ids} and {len(short) - SHORT_TOLD_EACH} more): "
            "outlets may block frequent polling",
        )
    ]


# --------------------------------------------------------------------------- names

#: Languages an item can have whatever its source declares: the script decides ko, ja and zh,
#: and Latin text from a source without a language is en (`watcher.items.detect_lang`).
DETECTED_LANGS = ("en", "ja", "ko", "zh")


#: How each kind of name is called in messages.
_NOUNS = {
    "source": ("source", "sources"),
    "event": ("event", "events"),
    "severity": ("severity", "severities"),
    "rule": ("rule", "rules"),
    "tag": ("tag", "source tags"),
    "lang": ("language", "languages"),
    "route": ("route", "routes"),
    "channel": ("channel", "channels"),
}


@dataclass(frozen=True)
class Names:
    """What a configuration can name, so that a typo in a route or a silence is an error and
    not a route that never fires.

    - events: those the rules report (a route naming any other never fires); a file without
      rules can only be checked against the shipped vocabulary, `EVENT_TYPES`;
    - tags: those of the sources;
    - languages: those of the sources, of the rules (`langs` and the languages of their terms)
      and the ones watcher detects by script (`DETECTED_LANGS`).

    Disabled rules and sources count: disabling one is meant to be undone.

    Usage::

        names = Names.of(config)
        names.values("tag")                      # ('korea', 'media', 'un', ...)
        names.problem("tag", "medai")            # "unknown tag 'medai' (did you mean 'media'?)"
    """

    sources: tuple[str, ...]
    #: The events the rules report (empty when there are no rules).
    rule_events: tuple[str, ...]
    tags: tuple[str, ...]
    langs: tuple[str, ...]
    rules: tuple[str, ...]
    #: Keys of the routes that take stories (not the ops routes).
    routes: tuple[str, ...]
    ops_routes: tuple[str, ...]
    channels: tuple[str, ...]
    #: The highest severity a rule can report, escalations included (None without rules).
    top_severity: str | None

    @classmethod
    def of(cls, config: Config) -> Names:
        langs = set(DETECTED_LANGS)
        langs.update(s.lang for s in config.sources if s.lang)
        not_langs = {GLOSS, NOT_INSIDE, "any"}
        for terms in config.concepts.values():
            langs.update(k for k in terms if k not in not_langs)
        severities: set[str] = set()
        for rule in config.rules:
            langs.update(rule.langs)
            groups = [*rule.all_of, *rule.none_of, *rule.none_in_sentence, *rule.context]
            groups += [g for esc in rule.escalate for g in esc.any_of]
            for group in groups:
                if isinstance(group, dict):
                    langs.update(k for k in group if k not in not_langs)
            severities.add(rule.severity)
            severities.update(esc.to for esc in rule.escalate)
        return cls(
            sources=tuple(s.id for s in config.sources),
            rule_events=tuple(sorted({r.event for r in config.rules})),
            tags=tuple(sorted({t for s in config.sources for t in s.tags})),
            langs=tuple(sorted(langs)),
            rules=tuple(r.id for r in config.rules),
            routes=tuple(r.key(i) for i, r in enumerate(config.routes) if not r.ops),
            ops_routes=tuple(r.key(i) for i, r in enumerate(config.routes) if r.ops),
            channels=tuple(c.id for c in config.channels),
            top_severity=max(severities, key=SEVERITIES.index) if severities else None,
        )

    @property
    def events(self) -> tuple[str, ...]:
        """The events a route or silence may name."""
        return self.rule_events or EVENT_TYPES

    def values(self, kind: str) -> tuple[str, ...]:
        """The known names of a kind: source, event, severity, rule, tag, lang, route, channel."""
        if kind == "severity":
            return SEVERITIES
        if kind == "event":
            return self.events
        return tuple(getattr(self, {"source": "sources", "lang": "langs"}.get(kind, kind + "s")))

    def problem(self, kind: str, value: str, known: Sequence[str] | None = None) -> str:
        """What to say about a name of `kind` that is not among `known` (default:
        `values(kind)`), with the nearest of them as a hint."""
        noun, nouns = _NOUNS[kind]
        names = tuple(known) if known is not None else self.values(kind)
        if kind == "event" and self.rule_events and value in EVENT_TYPES:
            return f"no rule reports event {value!r}{_hint(value, names, nouns)}"
        if kind == "lang" and COUNTRY_FOR_LANG.get(value.lower()) in names:
            return f"unknown language {value!r} (did you mean {COUNTRY_FOR_LANG[value.lower()]!r}?)"
        # two-letter codes differ by one letter at best: a lower bar finds kr → ko
        cutoff = 0.5 if kind == "lang" else 0.6
        return f"unknown {noun} {value!r}{_hint(value, names, nouns, cutoff)}"


def _hint(word: str, known: tuple[str, ...], nouns: str, cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(word, known, n=1, cutoff=cutoff)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if not known:
        return f" (there are no {nouns})"
    shown = ", ".join(known[:12]) + (", …" if len(known) > 12 else "")
    return f" ({nouns}: {shown})"


#: What operators write for a locale that is not its code: the did-you-mean for them.
_LOCALE_ALIASES = {
    **{k: v for k, v in COUNTRY_FOR_LANG.items() if v in LOCALES},
    "korean": "ko",
    "kor": "ko",
    "한국어": "ko",
    "english": "en",
    "eng": "en",
    "us": "en",
    "uk": "en",
    "gb": "en",
}


def locale_problem(value: str) -> str | None:
    """What is wrong with a route's `locale` (None: nothing).

    Usage::

        locale_problem("ko")      # None
        locale_problem("kr")      # "unknown locale 'kr' (did you mean 'ko'?)"
        locale_problem("ko-KR")   # "unknown locale 'ko-KR' (did you mean 'ko'?)"
        locale_problem("fr")      # "unknown locale 'fr' (alerts can be written in: en, ko)"
    """
    if value in LOCALES:
        return None
    lowered = value.strip().lower()
    base = lowered.replace("_", "-").split("-")[0]
    close = (
        _LOCALE_ALIASES.get(lowered)
        or (lowered if lowered in LOCALES else None)
        or (base if base in LOCALES else None)
        or _LOCALE_ALIASES.get(base)
        or next(iter(difflib.get_close_matches(lowered, LOCALES, n=1, cutoff=0.6)), None)
    )
    if close:
        return f"unknown locale {value!r} (did you mean {close!r}?)"
    return f"unknown locale {value!r} (alerts can be written in: {', '.join(LOCALES)})"


def _concept_lang_problems(
    config: Config,
) -> list[tuple[tuple[str | int, ...], tuple[str | int, ...], str]]:
    """A concept's terms under a country code (`kr:` for `ko:`, `jp:`, `cn:`) are never looked
    for when no source has that code as its language: an error, with the language meant. Other
    codes (`ru:`) are taken as written: a source of that language may be added."""
    known = set(DETECTED_LANGS)
    for source in config.sources:
        if source.lang:
            known.update((source.lang, source.lang.split("-")[0].lower()))
    for rule in config.rules:
        known.update(rule.langs)
    out: list[tuple[tuple[str | int, ...], tuple[str | int, ...], str]] = []
    for name, terms in config.concepts.items():
        for key in terms:
            meant = COUNTRY_FOR_LANG.get(key.lower())
            if key in known or meant is None:
                continue
            at: tuple[str | int, ...] = ("concepts", name, key)
            out.append(
                (
                    at,
                    at,
                    f"{key!r} is a country code, not a language: no item has it, so these terms "
                    f"are never looked for (did you mean {meant!r}?)",
                )
            )
    return out


def _own_route_problems(
    config: Config,
) -> list[tuple[tuple[str | int, ...], tuple[str | int, ...], str]]:
    """(path shown, path of the line, message) for what is wrong with a route on its own,
    whatever the rest of the file holds: an unknown locale, a story filter on an ops route."""
    out: list[tuple[tuple[str | int, ...], tuple[str | int, ...], str]] = []
    for index, route in enumerate(config.routes):
        at: tuple[str | int, ...] = ("routes", index)
        if route.ops:
            # ops routes carry operator notices; story filters on them are never consulted
            for key in ("events", "tags", "langs", "min_severity", "locale"):
                if key in route.model_fields_set:
                    out.append(
                        (
                            (*at, key),
                            (*at, key),
                            f"{key} has no effect on an ops route: it gets operator notices, "
                            "not stories (remove it, or remove ops: true)",
                        )
                    )
            continue
        wrong_locale = locale_problem(route.locale)
        if wrong_locale:
            out.append(((*at, "locale"), (*at, "locale"), wrong_locale))
    return out


def _route_problems(
    config: Config, names: Names
) -> list[tuple[tuple[str | int, ...], tuple[str | int, ...], str]]:
    """(path shown, path of the line, message) for every route that names what does not exist
    or can never fire."""
    out = _own_route_problems(config)
    for index, route in enumerate(config.routes):
        at: tuple[str | int, ...] = ("routes", index)
        if route.ops:
            continue
        for key, kind, known in (
            ("events", "event", names.events),
            ("tags", "tag", names.tags),
            ("langs", "lang", names.langs),
        ):
            for n, value in enumerate(getattr(route, key)):
                if value not in known:
                    out.append(((*at, key), (*at, key, n), names.problem(kind, value)))
        top = names.top_severity
        if top is not None and SEVERITIES.index(route.min_severity) > SEVERITIES.index(top):
            out.append(
                (
                    (*at, "min_severity"),
                    (*at, "min_severity"),
                    f"no rule reaches {route.min_severity!r} (the highest is {top!r}): this "
                    "route never fires",
                )
            )
        for earlier, before in enumerate(config.routes[:index]):
            if not before.ops and not before.continue_ and _covers(before, route):
                out.append(
                    (
                        at,
                        at,
                        f"route {route.key(index)!r} never fires: every story it takes stops "
                        f"at routes[{earlier}] ({before.key(earlier)!r}, continue: false) first",
                    )
                )
                break
    return out


def _covers(first: Route, later: Route) -> bool:
    """Does every story `later` would take match `first` too?"""
    return SEVERITIES.index(first.min_severity) <= SEVERITIES.index(later.min_severity) and all(
        not getattr(first, key)
        or (bool(getattr(later, key)) and set(getattr(later, key)) <= set(getattr(first, key)))
        for key in ("events", "tags", "langs")
    )


#: libyaml's parser when PyYAML has it (ten times faster on a 200-source file).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _index_lines(
    node: yaml.Node,
    path: tuple[str | int, ...],
    out: dict[Any, int],
    plain: dict[Any, str],
    duplicate: typing.Callable[[tuple[str | int, ...], str], None],
    inside: frozenset[int] = frozenset(),
) -> None:
    """The line of every key and item; the plain scalars YAML did not read as text; and
    every key written twice in one mapping (YAML keeps the last one silently: a second
    `sources:` would drop every source above it). An alias to a node it is inside (`sources:
    &a [*a]`, a loop no reader can end) is a YAML error. `inside`: the nodes above `node`."""
    if id(node) in inside:
        raise yaml.MarkedYAMLError(
            problem="an alias refers to a list or mapping it is inside (a loop: write the "
            "entries out instead)",
            problem_mark=node.start_mark,
        )
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
        inside = inside | {id(node)}
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, tuple[int, yaml.Node]] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue  # a list or mapping as a key: YAML refuses it when it builds the data
            child = (*path, key.value)
            line = key.start_mark.line + 1
            if key.value != "<<":
                if key.value in seen:
                    first, first_value = seen[key.value]
                    out[child] = line
                    duplicate(
                        child,
                        f"key written twice (first at line {first}): YAML would keep only this "
                        f"one; {_keep_one(key.value, (first, first_value), (line, value), path)}",
                    )
                    continue
                seen[key.value] = (line, value)
            _index_lines(value, child, out, plain, duplicate, inside)
            out[child] = line
    elif isinstance(node, yaml.SequenceNode):
        for index, value in enumerate(node.value):
            _index_lines(value, (*path, index), out, plain, duplicate, inside)
    elif (
        isinstance(node, yaml.ScalarNode)
        and not node.style  # plain: None from PyYAML, "" from its C loader
        and node.tag not in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:null")
    ):
        plain[path] = node.value


def _keep_one(
    key: str, first: tuple[int, yaml.Node], second: tuple[int, yaml.Node], path: tuple[Any, ...]
) -> str:
    """What to do about a key written twice: delete the empty one when one is (`channels: []`
    left above an example uncommented below it), else keep one."""
    empty = [line for line, value in (first, second) if _empty(value)]
    if len(empty) == 1:
        return f"delete the empty one (line {empty[0]})"
    if not path:  # a section: both halves are most likely meant
        return f"merge them: one {key}: with the entries of both under it"
    return "delete the one you do not mean"


def _empty(node: yaml.Node) -> bool:
    """`[]`, `{}` or nothing written."""
    if isinstance(node, yaml.SequenceNode | yaml.MappingNode):
        return not node.value
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _line_for(lines: Mapping[tuple[str | int, ...], int], path: tuple[str | int, ...]) -> int:
    """The line of the deepest part of `path` present in the file."""
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return 1


def _display(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _fmt(name: str, lines: Mapping[Any, int], path: tuple[str | int, ...], message: str) -> str:
    where = f"{_display(path)}: " if path else ""
    return f"{name}:{_line_for(lines, path)}: {where}{message}"


_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _substitute(
    value: Any,
    path: tuple[str | int, ...],
    env: Mapping[str, str],
    secrets: set[str],
    report: typing.Callable[[tuple[Any, ...], str], None],
) -> Any:
    """`value` with `${VAR}`s expanded (values from `env` are added to `secrets`); each
    variable that is not set and has no default is given to `report` (its path, its name)
    and expands to nothing."""
    if isinstance(value, dict):
        return {k: _substitute(v, (*path, k), env, secrets, report) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, (*path, i), env, secrets, report) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        var, default = m.group(1), m.group(2)
        if var in env and env[var] != "":
            if len(env[var]) >= 4:
                secrets.add(env[var])
            return env[var]
        if default is not None:
            return default
        report(path, var)
        return ""

    return _VAR.sub(replace, value)


def _keep_written_urls(config: Config, written: Any, env: Mapping[str, str]) -> None:
    """Give each source its url as the file writes it (`${VAR}` unexpanded), which is what the
    database stores: a key in the environment never reaches a table, a backup or an export.
    And the values its own `${VAR}`s expand to (url, headers, params…), which its parser
    keeps out of the items' links (`SourceBase.secrets`)."""
    if not isinstance(written, list):
        return
    for source, entry in zip(config.sources, written, strict=False):
        url = entry.get("url") if isinstance(entry, dict) else None
        # the model is frozen; private attributes are the loader's to set
        if isinstance(url, str) and url != source.url:
            source._written_url = url
        own: set[str] = set()
        _substitute(entry, (), env, own, lambda path, var: None)
        source._secrets = frozenset(own)


def _format_validation(
    exc: ValidationError,
    name: str,
    lines: Mapping[Any, int],
    data: Any,
    plain: Mapping[Any, str] | None = None,
    skip: set[tuple[str | int, ...]] | None = None,
) -> list[str]:
    """One line per problem pydantic found; none under `skip` (values already reported)."""
    problems = []
    errors = exc.errors()
    # "at least 1 item" on a list whose item is itself invalid says nothing new: skip it.
    bad_items = {tuple(e["loc"][:-1]) for e in errors if len(e["loc"]) > 1}
    errors = [e for e in errors if not (e["type"] == "too_short" and tuple(e["loc"]) in bad_items)]
    errors += _errors_as_meant(errors)
    for error in errors:
        ctx_error = (error.get("ctx") or {}).get("error")
        if isinstance(ctx_error, ReferenceProblem):
            continue  # listed with the others, from the data (`reference_problems`)
        loc = tuple(error["loc"])
        if isinstance(ctx_error, LocatedError):
            loc = ctx_error.loc
        path = _data_path(loc, data)
        if skip and any(path[: len(p)] == p for p in skip):
            continue
        message = _message(error, loc, path, data)
        if plain and path in plain and error["type"] == "string_type":
            written = plain[path]
            message += f' (YAML reads {written} without quotes as that: write "{written}")'
        rule_id = _rule_id(path, data)
        if rule_id and not message.startswith("rule "):
            message = f"rule {rule_id!r}: {message}"
        problems.append(_fmt(name, lines, path, message))
    return list(dict.fromkeys(problems))


#: Kinds written for a feed by people who know feeds by their format's name.
_FEED_NAMES = frozenset({"rss", "atom", "rdf", "xml", "rss2", "feeds"})
#: Keys only one kind has: an entry that has them is that kind, whatever it says.
_KIND_KEYS = {"selectors": "html", "items": "json", "fields": "json", "params": "json"}


def meant_kind(entry: Mapping[str, Any]) -> str | None:
    """The kind a source of an unknown kind most likely is: by the keys only one kind has
    (`selectors`: html), else by its name (`rss`, `atom`: feed; `htm`: html), or None."""
    for key, kind in _KIND_KEYS.items():
        if key in entry:
            return kind
    written = str(entry.get("kind", "")).strip().lower()
    if written in _FEED_NAMES:
        return "feed"
    close = difflib.get_close_matches(written, SOURCE_KINDS, n=1, cutoff=0.5)
    return close[0] if close else None


_SOURCE: TypeAdapter[Any] = TypeAdapter(cast(Any, Source))  # a union, not a class


def _errors_as_meant(errors: Sequence[Any]) -> list[Any]:
    """For each source of an unknown kind, the problems of its other fields when read as the
    kind it most likely is: one run of `check` lists them with the kind, not after it."""
    found: list[Any] = []
    for error in errors:
        entry = error.get("input")
        if error["type"] != "union_tag_invalid" or not isinstance(entry, dict):
            continue
        # No likely kind: the fields every kind has are still checked (as a feed's, less
        # the keys a feed does not have, which another kind may).
        meant = meant_kind(entry)
        try:
            _SOURCE.validate_python({**entry, "kind": meant or "feed"})
        except ValidationError as exc:
            found += [
                {**more, "loc": (*error["loc"], *more["loc"])}
                for more in exc.errors()
                if "kind" not in more["loc"] and (meant or more["type"] != "extra_forbidden")
            ]
    return found


def _rule_id(path: tuple[Any, ...], data: Any) -> str | None:
    """The id of the rule a path points into, so that rule errors name their rule."""
    if len(path) >= 3 and path[0] == "rules" and isinstance(path[1], int):
        rule = data.get("rules", [])[path[1]]
        rule_id = rule.get("id") if isinstance(rule, dict) else None
        if isinstance(rule_id, str):
            return rule_id
    return None


def _data_path(loc: tuple[Any, ...], data: Any) -> tuple[str | int, ...]:
    """Drop the parts of a pydantic location that are not in the file (union tags)."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            out.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            out.append(part)
        elif isinstance(node, dict) and isinstance(part, str) and part not in SOURCE_KINDS:
            out.append(part)  # a missing key: point at it, on its parent's line
            node = None
    return tuple(out)


def _message(error: Any, loc: tuple[Any, ...], path: tuple[Any, ...], data: Any) -> str:
    kind, got = error["type"], error.get("input")
    msg = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"expected one of: {', '.join(allowed)}"
        return f"unknown key ({hint})"
    if kind == "missing":
        return "required key is missing"
    if kind == "string_too_short" and got == "":
        return "empty: give it a value, or remove the key"
    if kind == "union_tag_invalid":
        meant = meant_kind(got)
        hint = f"did you mean {meant!r}? " if meant else ""
        kinds = ", ".join(SOURCE_KINDS)
        return f"unknown kind {got.get('kind')!r} ({hint}expected one of: {kinds})"
    if kind == "union_tag_not_found":
        return f"'kind' is missing (expected one of: {', '.join(SOURCE_KINDS)})"
    if kind == "string_pattern_mismatch" and path and path[-1] == "lang":
        alias = _LOCALE_ALIASES.get(str(got).lower()) or COUNTRY_FOR_LANG.get(str(got).lower())
        hint = f" (did you mean {alias!r}?)" if alias else ""
        return f"expected a language code like en, ko or zh-TW, got {short(got)}{hint}"
    if kind == "literal_error":
        return f"expected {msg.removeprefix('Input should be ')}, got {got!r}"
    if kind in {
        "string_type",
        "int_type",
        "int_parsing",
        "bool_type",
        "bool_parsing",
        "float_parsing",
        "list_type",
        "tuple_type",
        "dict_type",
        "model_type",
        "model_attributes_type",
        "string_pattern_mismatch",
    }:
        expected = {
            "string_type": "text",
            "int_type": "a whole number",
            "int_parsing": "a whole number",
            "bool_type": "true or false",
            "bool_parsing": "true or false",
            "float_parsing": "a number",
            "list_type": "a list",
            "tuple_type": "a list",
            "dict_type": "a mapping",
            "model_type": "a mapping",
            "model_attributes_type": "a mapping",
            "string_pattern_mismatch": "letters, digits, '-', '_' or '.'"
            if path and path[-1] == "id"
            else f"text matching {(error.get('ctx') or {}).get('pattern')}",
        }[kind]
        return f"expected {expected}, got {short(got)}"
    if isinstance(error.get("ctx", {}).get("error"), ValueError):
        return msg
    return f"{msg[0].lower()}{msg[1:]}, got {short(got)}" if msg else f"invalid value {short(got)}"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    """Walk the model types along `loc` and list the keys allowed at its end."""
    tp: Any = Config
    for part in loc:
        tp = _unwrap(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if part in tp.model_fields:
                tp = tp.model_fields[part].annotation
            continue
        origin = typing.get_origin(tp)
        if origin in (Union, types.UnionType):
            members = [_unwrap(a) for a in typing.get_args(tp)]
            tp = next((m for m in members if _kind_of(m) == part), members[0])
            if _kind_of(tp) == part:
                continue
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if origin in (tuple, list):
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return sorted(tp.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _kind_of(tp: Any) -> str | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel) and "kind" in tp.model_fields:
        args = typing.get_args(tp.model_fields["kind"].annotation)
        return str(args[0]) if args else None
    return None
