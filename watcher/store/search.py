"""The search index over items: what is indexed, how a query reads, and how matching items
are found, newest first, on SQLite (FTS5) and PostgreSQL (a tsvector with a GIN index).

Both databases index the same *document*, made here from an item's title and text:

- Korean, Chinese and Japanese runs become overlapping character bigrams (강제북송 → 강제 제북
  북송), so a two-character query such as 선양 or 북송 finds its substring anywhere;
- every other word is kept as a word, and the database stems it (SQLite's porter tokenizer,
  PostgreSQL's English snowball stemmer without stop words), so "repatriation" finds
  "repatriates".

A query (`parse`) has words, "quoted phrases", a trailing * for a prefix and -exclusions; a
word or phrase that names a place or body known in several languages (Shenyang, 선양, 沈阳,
瀋陽) also matches its other spellings, from the tables extraction uses
(`watcher.extract.GAZETTEER` and `ENTITIES`).

The index lives outside `tables.metadata` (a virtual table on SQLite; a table, a text search
configuration and a GIN index on PostgreSQL): `create_index` builds it, called by migration
0009 and by `metadata.create_all` (a listener in tables.py). `INDEX_OBJECTS` names what it
creates, for schema comparisons.

Usage::

    query = parse('선양 -"border reopening"')
    ids = matching_ids(conn, query, before=None, limit=50)   # newest published first
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from functools import cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    and_,
    bindparam,
    case,
    column,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    table,
    tuple_,
)
from sqlalchemy import text as sql
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from watcher.store import tables as t

#: The virtual table (SQLite) or table (PostgreSQL) holding one document per item.
INDEX = "item_search"
#: PostgreSQL's text search configuration: English stemming, no stop words.
PG_CONFIG = "watcher_search"
#: Tables the index adds beside `tables.metadata` (FTS5 keeps its own shadow tables).
INDEX_OBJECTS = frozenset(
    {INDEX, f"{INDEX}_data", f"{INDEX}_idx", f"{INDEX}_config", f"{INDEX}_docsize"}
)


def include_name(name: str | None, type_: str, _parents: Any = None) -> bool:
    """For Alembic's schema comparisons (`include_name`): the index's tables are not in
    `tables.metadata`, by design."""
    return not (type_ == "table" and name in INDEX_OBJECTS) and name != ORDER_INDEX


#: Tokens kept per document: PostgreSQL stores positions up to 16,383, and a longer article
#: says what it is about well before that.
MAX_TOKENS = 12_000
#: A longer "word" is noise (base64, a URL run together), and PostgreSQL refuses > 2 kB.
MAX_TOKEN_CHARS = 60
#: Clauses a query may have (words, phrases, exclusions); more is refused as too complex.
MAX_CLAUSES = 16

_CJK_RANGES = (
    "\u1100-\u11ff"  # Hangul Jamo
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3130-\u318f"  # Hangul compatibility Jamo
    "\u31f0-\u31ff"  # Katakana phonetic extensions
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
)
_TOKEN = re.compile(rf"[{_CJK_RANGES}]+|[^\W_{_CJK_RANGES}]+")
_CJK = re.compile(rf"[{_CJK_RANGES}]")


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def tokens(text: str) -> list[str]:
    """The index tokens of a text, in order: bigrams of CJK runs, other words whole.

    Usage::

        tokens("中, 탈북민 60여명 강제북송")
        # ['中', '탈북', '북민', '60', '여명', '강제', '제북', '북송']
    """
    out: list[str] = []
    for match in _TOKEN.finditer(_fold(text)):
        run = match.group()
        if _CJK.match(run):
            if len(run) == 1:
                out.append(run)
            else:
                out.extend(run[i : i + 2] for i in range(len(run) - 1))
        elif len(run) <= MAX_TOKEN_CHARS:
            out.append(run)
    return out


def document(title: str, text: str) -> str:
    """What is indexed for an item: its tokens, space-separated (the databases split on spaces
    and stem the words)."""
    return " ".join(tokens(f"{title}\n{text}")[:MAX_TOKENS])


# --------------------------------------------------------------------------- the index


def create_index(conn: Connection) -> None:
    """Build the (empty) index when it is not there: migration 0009 and
    `metadata.create_all` call this."""
    if conn.dialect.name == "postgresql":
        have = conn.execute(
            sql(
                "SELECT 1 FROM pg_ts_config WHERE cfgname = :n"
                " AND cfgnamespace = current_schema()::regnamespace"
            ),
            {"n": PG_CONFIG},
        ).first()
        if have is None:
            conn.execute(
                sql(
                    f"CREATE TEXT SEARCH DICTIONARY {PG_CONFIG}_stem "
                    "(TEMPLATE = snowball, LANGUAGE = english)"
                )
            )
            conn.execute(sql(f"CREATE TEXT SEARCH CONFIGURATION {PG_CONFIG} (COPY = english)"))
            conn.execute(
                sql(
                    f"ALTER TEXT SEARCH CONFIGURATION {PG_CONFIG} "
                    f"ALTER MAPPING REPLACE english_stem WITH {PG_CONFIG}_stem"
                )
            )
        conn.execute(
            sql(
                f"CREATE TABLE IF NOT EXISTS {INDEX} (item_id BIGINT PRIMARY KEY "
                "REFERENCES items (id) ON DELETE CASCADE, doc TSVECTOR NOT NULL)"
            )
        )
        conn.execute(sql(f"CREATE INDEX IF NOT EXISTS ix_{INDEX}_doc ON {INDEX} USING gin (doc)"))
        create_order_index(conn)
    else:
        # Contentless (the document is rebuilt from the item when needed), no column sizes
        # (results are ordered by recency, not rank): the index stays small.
        conn.execute(
            sql(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {INDEX} USING fts5(doc, content='', "
                "columnsize=0, tokenize='porter unicode61 remove_diacritics 2')"
            )
        )
        create_order_index(conn)


def create_order_index(conn: Connection) -> None:
    """The items in the order of results, newest first (`ORDER_INDEX`; migration 0013)."""
    conn.execute(
        sql(
            f"CREATE INDEX IF NOT EXISTS {ORDER_INDEX} "
            "ON items (coalesce(published_at, fetched_at), id)"
        )
    )


def drop_index(conn: Connection) -> None:
    """Remove the index (migration 0009's downgrade)."""
    conn.execute(sql(f"DROP TABLE IF EXISTS {INDEX}"))
    conn.execute(sql(f"DROP INDEX IF EXISTS {ORDER_INDEX}"))
    if conn.dialect.name == "postgresql":
        conn.execute(sql(f"DROP TEXT SEARCH CONFIGURATION IF EXISTS {PG_CONFIG}"))
        conn.execute(sql(f"DROP TEXT SEARCH DICTIONARY IF EXISTS {PG_CONFIG}_stem"))


def index_items(conn: Connection, items: Iterable[tuple[int, str, str]]) -> None:
    """Add new items, as (id, title, text), to the index (in the caller's transaction)."""
    values = [{"id": i, "doc": document(title, text)} for i, title, text in items]
    if not values:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(
            sql(
                f"INSERT INTO {INDEX} (item_id, doc) VALUES "
                f"(:id, to_tsvector('{PG_CONFIG}', :doc)) "
                "ON CONFLICT (item_id) DO UPDATE SET doc = excluded.doc"
            ),
            values,
        )
    else:
        conn.execute(sql(f"INSERT INTO {INDEX} (rowid, doc) VALUES (:id, :doc)"), values)


def reindex_item(
    conn: Connection, item_id: int, old: tuple[str, str], new: tuple[str, str]
) -> None:
    """An edited item: its old (title, text) leave the index, the new ones enter it."""
    if conn.dialect.name == "sqlite":
        # A contentless FTS5 table forgets a row by being told what it held.
        conn.execute(
            sql(f"INSERT INTO {INDEX} ({INDEX}, rowid, doc) VALUES ('delete', :id, :doc)"),
            {"id": item_id, "doc": document(*old)},
        )
    index_items(conn, [(item_id, *new)])


def rebuild(conn: Connection, batch: int = 2000) -> int:
    """Index every stored item (migration 0009 on an existing database); returns the count."""
    last, done = 0, 0
    while True:
        found = conn.execute(
            sql("SELECT id, title, text FROM items WHERE id > :last ORDER BY id LIMIT :n"),
            {"last": last, "n": batch},
        ).all()
        if not found:
            return done
        index_items(conn, [(r.id, r.title, r.text) for r in found])
        last, done = found[-1].id, done + len(found)


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True, kw_only=True, slots=True)
class Clause:
    """One word or phrase of a query: any of its spellings, as token sequences."""

    #: Each alternative is a phrase (tokens in a row); an alias adds alternatives.
    alternatives: tuple[tuple[str, ...], ...]
    #: Written with a trailing * : the last token is a prefix.
    prefix: bool = False
    #: For an English prefix: whole words it starts (repatriat → repatriation), which the
    #: database stems as it stemmed the index, for a stem shorter than the prefix (repatri).
    words: tuple[tuple[str, ...], ...] = ()
    #: Written with a leading - : the item must not contain it.
    exclude: bool = False
    #: As the user wrote it (for highlighting and explanations).
    shown: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Query:
    """A parsed search: the clauses, and what they were parsed from."""

    clauses: tuple[Clause, ...]
    text: str = ""

    @property
    def positive(self) -> tuple[Clause, ...]:
        return tuple(c for c in self.clauses if not c.exclude)

    @property
    def searchable(self) -> bool:
        """At least one clause that must match (an exclusion alone finds nothing)."""
        return bool(self.positive)

    def spellings(self) -> tuple[str, ...]:
        """Every spelling a match may show, longest first (what a page highlights)."""
        found: set[str] = set()
        for clause in self.positive:
            found.add(clause.shown)
            found.update(_aliases().get(_fold(clause.shown), ()))
        return tuple(sorted((s for s in found if s), key=len, reverse=True))


class QueryError(ValueError):
    """A query that cannot be searched (too many clauses); the message says why."""


_PART = re.compile(r'(-?)"([^"]*)"?|(\S+)')


def parse(text: str) -> Query:
    """Words, "quoted phrases", prefix* and -exclusions; aliases of places and bodies added.

    Usage::

        parse('Shenyang -"border reopening"').clauses[0].alternatives
        # (('shenyang',), ('선양',), ('심양',), ('沈阳',), ('瀋陽',), ('沈陽',))
    """
    parts: list[tuple[str, bool, bool]] = []  # (text, quoted, excluded)
    for m in _PART.finditer(text):
        if m.group(2) is not None:
            parts.append((m.group(2), True, m.group(1) == "-"))
        else:
            word = m.group(3)
            excluded = word.startswith("-") and len(word) > 1
            parts.append((word[1:] if excluded else word, False, excluded))
    clauses: list[Clause] = []
    expanded = 0  # prefixes completed with English endings so far (`MAX_EXPANDED`)
    i = 0
    while i < len(parts):
        # the longest run of plain words (up to 4) that is a known multi-word spelling
        span = 1
        if not parts[i][1]:
            for n in range(min(4, len(parts) - i), 1, -1):
                run = parts[i : i + n]
                if any(quoted or excluded for _, quoted, excluded in run):
                    continue
                if _fold(" ".join(p for p, _, _ in run)) in _aliases():
                    span = n
                    break
        words = " ".join(p for p, _, _ in parts[i : i + span])
        quoted, excluded = parts[i][1], parts[i][2]
        i += span
        prefix = not quoted and words.endswith("*") and len(words) > 1
        core = words.rstrip("*") if prefix else words
        phrase = tuple(tokens(core))
        if not phrase:
            continue
        if len(phrase) == 1 and len(phrase[0]) == 1 and _CJK.match(phrase[0]):
            prefix = True  # one character: the bigrams it starts (中 finds 中国)
        alternatives = [phrase]
        for spelling in _aliases().get(_fold(core), ()):
            alt = tuple(tokens(spelling))
            if alt and alt not in alternatives:
                alternatives.append(alt)
        prefix = prefix and len(alternatives) == 1
        # completed with English endings: a short phrase, a few times a query (each completion
        # repeats the phrase; a hostile query of long hyphenated prefixes would cost 30x)
        complete = prefix and len(phrase) <= MAX_PREFIX_TOKENS and expanded < MAX_EXPANDED
        completed = _words_of_prefix(phrase) if complete else ()
        expanded += bool(completed)
        clauses.append(
            Clause(
                alternatives=tuple(alternatives),
                prefix=prefix,
                words=completed,
                exclude=excluded,
                shown=core,
            )
        )
    if len(clauses) > MAX_CLAUSES:
        raise QueryError(f"a search may have at most {MAX_CLAUSES} words or phrases")
    return Query(clauses=tuple(clauses), text=text)


#: A prefix is completed with English endings only in a phrase of at most this many tokens,
#: and in at most this many clauses of a query; beyond, it is matched as a prefix alone.
MAX_PREFIX_TOKENS = 3
MAX_EXPANDED = 4
#: Endings that make a word of an English prefix; the database stems each such word to the
#: stem its index holds, which may be shorter than the prefix (repatriat|ion → repatri,
#: authorit|y → author), so the prefix alone would miss it.
SUFFIXES = (
    "e", "s", "es", "ed", "ing", "y", "ies", "ion", "ions", "ation", "ity", "ities", "ive",
    "al", "ally", "ly", "ment", "ness", "er", "ers", "ate", "ated", "ates", "ating",
    "te", "ted", "tes", "ting", "tion", "tive", "ty", "ties", "n", "ns",
)  # fmt: skip
_ENGLISH = re.compile(r"[a-z]{4,}")


def _words_of_prefix(phrase: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """The phrase with its last token (a prefix) completed by each of `SUFFIXES`, when it is
    an English word of four letters or more (shorter prefixes are not cut by stemming)."""
    *head, last = phrase
    if not _ENGLISH.fullmatch(last):
        return ()
    return tuple((*head, last + ending) for ending in ("", *SUFFIXES))


@cache
def _aliases() -> dict[str, tuple[str, ...]]:
    """Folded spelling → every spelling of the same place or body."""
    from watcher.extract import ENTITIES, GAZETTEER

    out: dict[str, tuple[str, ...]] = {}
    for names in (GAZETTEER, ENTITIES):
        for canonical, spellings in names.items():
            every = tuple(dict.fromkeys((canonical.lower(), *spellings)))
            for spelling in every:
                out[_fold(spelling)] = tuple(dict.fromkeys(out.get(_fold(spelling), ()) + every))
    return out


def fts5(query: Query) -> str:
    """The FTS5 MATCH expression (every token quoted: nothing the user types is syntax)."""

    def phrase(tokens_: tuple[str, ...], prefix: bool) -> str:
        return '"' + " ".join(tokens_).replace('"', '""') + '"' + ("*" if prefix else "")

    def clause(c: Clause) -> str:
        alts = [phrase(a, c.prefix) for a in c.alternatives]
        alts += [phrase(w, False) for w in c.words]
        return alts[0] if len(alts) == 1 else "(" + " OR ".join(alts) + ")"

    expr = " AND ".join(clause(c) for c in query.positive)
    for c in query.clauses:
        if c.exclude:
            expr = f"({expr}) NOT {clause(c)}"
    return expr


def tsquery(query: Query) -> str:
    """The PostgreSQL tsquery text, for `to_tsquery(PG_CONFIG, …)` (every lexeme quoted)."""

    def lexeme(token: str, prefix: bool) -> str:
        return "'" + token.replace("\\", "\\\\").replace("'", "''") + "'" + (":*" if prefix else "")

    def phrase(tokens_: tuple[str, ...], prefix: bool) -> str:
        parts = [lexeme(t, prefix and n == len(tokens_) - 1) for n, t in enumerate(tokens_)]
        return "(" + " <-> ".join(parts) + ")"

    def clause(c: Clause) -> str:
        alts = [phrase(a, c.prefix) for a in c.alternatives]
        alts += [phrase(w, False) for w in c.words]
        return "(" + " | ".join(alts) + ")"

    parts = [clause(c) for c in query.positive]
    parts += ["!" + clause(c) for c in query.clauses if c.exclude]
    return " & ".join(parts)


@dataclass(frozen=True, kw_only=True, slots=True)
class ItemFilter:
    """What hits can be narrowed by besides the text (all optional)."""

    #: An event type: the item's own match, or its story's events.
    event: str | None = None
    #: Severities allowed (the story's, or the item's own match's).
    severities: tuple[str, ...] | None = None
    #: A source that carried the item.
    source: str | None = None
    lang: str | None = None
    #: Publication (else fetch) time in [since, until); a day-only report's day among the
    #: days of that period in `zone` (see `within`).
    since: datetime | None = None
    until: datetime | None = None
    zone: tzinfo = UTC


def counted(at: Any, day: Any) -> Any:
    """`types.counted_at` in SQL: a report's time `at`, or when its outlet gave its day alone
    (`day` not null) that day's last instant, where lists place it (newest first)."""
    return case((day.is_not(None), _DayEnd(at)), else_=at)


class _DayEnd(FunctionElement[datetime]):
    """A stored midnight moved on by `types.DAY_END` (to its day's last microsecond)."""

    type = t.UTCDateTime()
    inherit_cache = True
    name = "day_end"


@compiles(_DayEnd)
def _day_end(element: Any, compiler: Any, **kw: Any) -> str:
    at = compiler.process(element.clauses, **kw)
    # in seconds: a day in the session's zone may have 23 or 25 hours
    return f"({at} + INTERVAL '86399.999999 seconds')"


@compiles(_DayEnd, "sqlite")
def _day_end_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    # stored as text, microseconds written out; a day's midnight has whole seconds
    at = compiler.process(element.clauses, **kw)
    return f"(strftime('%Y-%m-%d %H:%M:%S', {at}, '+1 day', '-1 seconds') || '.999999')"


def period_days(
    since: datetime | None, until: datetime | None, zone: tzinfo
) -> tuple[date | None, date | None]:
    """The first and last day, in `zone`, of the period [since, until): a report its outlet
    gave the day of only is in the period when its day is one of them.

    Usage::

        period_days(since_2026_11_20_midnight, until_2026_11_21_midnight, zone)
        # (date(2026, 11, 20), date(2026, 11, 20)): `since=2026-11-20&until=2026-11-20`
    """
    first = since.astimezone(zone).date() if since is not None else None
    last = (until - timedelta(microseconds=1)).astimezone(zone).date() if until else None
    return first, last


def within(
    at: Any, day: Any, since: datetime | None, until: datetime | None, zone: tzinfo
) -> list[Any]:
    """Conditions that a report is in the period [since, until): by its time `at`, or, when
    its outlet gave its day alone (`day` not null), by that day (`period_days`): never by
    the midnight it is stored at, which a zone west of the source's puts on the day before.
    The pages' and API's `since`/`until` and the chart's months all take this rule."""
    first, last = period_days(since, until, zone)
    conds: list[Any] = []
    if since is not None:
        conds.append(or_(day >= first, and_(day.is_(None), at >= since)))
    if until is not None:
        conds.append(or_(day <= last, and_(day.is_(None), at < until)))
    return conds


def matching_ids(
    conn: Connection,
    query: Query,
    where: ItemFilter | None = None,
    *,
    before: int | None = None,
    among: Sequence[int] | None = None,
    limit: int = 100,
) -> list[int]:
    """Ids of the items that match, newest first (by publication time, else fetch time; ties
    by id): after the item `before` in that order when given, only `among` these when given.

    An item's times never change, so `before` (an id a page ended with) keeps its place while
    items arrive, late-found ones included. The index has no time order: a word that matches
    few items is read whole and its matches sorted; a common word (the planner's estimate on
    PostgreSQL, a count stopped at `SQLITE_COMMON` on SQLite) is tested on the newest items,
    walking `ORDER_INDEX`, which fills the page soonest; only what the newest `PROBE` items
    did not fill is asked of the index, below them."""
    if not query.searchable or (among is not None and not among):
        return []
    i = t.items
    if before is not None and conn.execute(select(i.c.id).where(i.c.id == before)).first() is None:
        # the page ended on an item since pruned (or a cursor made up): its place is unknown
        raise QueryError(
            "these results have changed since (the cursor's item is gone): search again"
        )
    placed = [_after(before)] if before is not None else []
    filters = [c(i.c.id) if callable(c) else c for c in _item_conditions(where or ItemFilter())]
    conds = filters + placed
    # the newest items (`ORDER_INDEX` alone), for a common word to be tested on in turn
    newest = _newest_first(select(i.c.id, _when().label("at")).where(*placed))
    size = PG_PROBE if conn.dialect.name == "postgresql" else SQLITE_PROBE
    edge: list[Any] = []  # the last of the newest `size` (None: fewer), once read

    def last_of_newest() -> Any:
        if not edge:
            edge.append(conn.execute(newest.offset(size - 1).limit(1)).first())
        return edge[0]

    if conn.dialect.name == "postgresql":
        tested = _PG.c.doc.op("@@")(
            func.to_tsquery(literal_column(f"'{PG_CONFIG}'"), bindparam("q", tsquery(query)))
        )
        found = select(_PG.c.item_id).where(tested)
        if among is not None:
            found = found.where(_PG.c.item_id.in_(list(among)))
        common = among is None and _estimate(conn, tsquery(query)) > PG_COMMON
        if common:
            # joined, each is tested in turn (a semi-join would read every match); the
            # planner keeps the subquery's order
            probe = newest.limit(size).subquery("newest")
            tried = select(probe.c.id).join(_PG, _PG.c.item_id == probe.c.id).where(tested)
            if filters:
                tried = tried.join(i, i.c.id == probe.c.id).where(*filters)
            tried = tried.order_by(probe.c.at.desc(), probe.c.id.desc())
    else:
        found = select(_FTS.c.rowid).where(sql(f"{INDEX} MATCH :q").bindparams(q=fts5(query)))
        if among is not None:
            found = found.where(_FTS.c.rowid.in_(list(among)))
        common = among is None and _count(conn, found, SQLITE_COMMON) >= SQLITE_COMMON
        if common:
            # SQLite sorts what a subquery gives: the walk is bounded by its last item instead
            last = last_of_newest()
            tried = select(i.c.id).where(exists(found.where(_FTS.c.rowid == i.c.id)), *conds)
            if last is not None:
                tried = tried.where(~_after(last.id))
            tried = _newest_first(tried)
    ids: list[int] = []
    if common:
        ids = [r.id for r in conn.execute(tried.limit(limit))]
        if len(ids) >= limit:
            return ids
        last = last_of_newest()
        if last is None:
            return ids  # the newest were every item there is (after `before`)
        conds.append(_after(last.id))
        limit -= len(ids)
    rest = select(i.c.id).where(i.c.id.in_(found), *conds)
    return ids + [r.id for r in conn.execute(_newest_first(rest, walk=False).limit(limit))]


#: A word PostgreSQL expects in more documents than this, or SQLite finds in as many, is
#: looked for on the newest items first (`PG_PROBE`, `SQLITE_PROBE` of them at most), before
#: the index is asked for the rest.
PG_COMMON = 2000
PG_PROBE = 20_000
SQLITE_COMMON = 2000
SQLITE_PROBE = 5000
#: The items in the order results take (created beside the search index, outside
#: `tables.metadata`: SQLAlchemy's schema comparison does not read expression indexes).
ORDER_INDEX = "ix_items_search_order"


def _when(items: Any = t.items) -> Any:
    """When an item is placed among results: its publication time, else its fetch time."""
    return func.coalesce(items.c.published_at, items.c.fetched_at, type_=t.UTCDateTime)


def _newest_first(found: Any, *, walk: bool = True) -> Any:
    """`found` in the results' order; `walk=False` for few matches: the same order by an
    expression `ORDER_INDEX` does not hold, so they are sorted (PostgreSQL walked the index
    testing every item for a rare word)."""
    i = t.items
    when = _when() if walk else func.coalesce(i.c.published_at, i.c.fetched_at, i.c.fetched_at)
    return found.order_by(when.desc(), i.c.id.desc())


def _after(item_id: int) -> Any:
    """Items after `item_id` in the results' order (its time read from its row, as stored;
    `matching_ids` refuses a cursor whose item is gone)."""
    other = t.items.alias("placed")
    at = select(_when(other)).where(other.c.id == item_id).scalar_subquery()
    return tuple_(_when(), t.items.c.id) < tuple_(at, literal(item_id, BigInteger))


def _count(conn: Connection, found: Any, most: int) -> int:
    """How many rows `found` has, counting no further than `most`."""
    return int(
        conn.execute(select(func.count()).select_from(found.limit(most).subquery())).scalar_one()
    )


def _estimate(conn: Connection, tsq: str) -> float:
    """The planner's estimate of the documents that match (statistics kept by ANALYZE),
    remembered ten minutes per database and query (statistics change slowly; a stale one only
    picks the slower of two ways to the same answer)."""
    key = (str(conn.engine.url), tsq)
    known = _ESTIMATES.get(key)
    if known is not None and known[1] > time.monotonic():
        return known[0]
    plan = conn.execute(
        sql(
            f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {INDEX}"
            f" WHERE doc @@ to_tsquery('{PG_CONFIG}', :q)"
        ),
        {"q": tsq},
    ).scalar()
    if isinstance(plan, str):
        import json

        plan = json.loads(plan)
    estimate = float(plan[0]["Plan"]["Plan Rows"]) if plan else 0.0
    if len(_ESTIMATES) >= 1024:
        _ESTIMATES.clear()
    _ESTIMATES[key] = (estimate, time.monotonic() + 600)
    return estimate


#: (engine, tsquery) → (estimated matches, until when it is trusted).
_ESTIMATES: dict[tuple[str, str], tuple[float, float]] = {}


_FTS = table(INDEX, column("rowid", Integer))
_PG = table(INDEX, column("item_id", BigInteger), column("doc"))


def _item_conditions(where: ItemFilter) -> list[Any]:
    """Conditions on the hit's item row (`items`, joined on the index key); those that need
    the key itself are functions of it."""
    i = t.items
    conds: list[Any] = []
    if where.source:
        x = t.item_sources
        source = where.source
        conds.append(lambda key: exists().where(x.c.item_id == key, x.c.source_id == source))
    if where.lang:
        conds.append(i.c.lang == where.lang)
    conds += within(_when(), i.c.published_day, where.since, where.until, where.zone)
    if not where.event and where.severities is None:
        return conds
    m, si, st = t.matches, t.story_items, t.stories
    # on the item's own id (joined): the index key may be an expression
    story_of = exists().where(si.c.item_id == i.c.id, st.c.id == si.c.story_id)
    if where.event:
        conds.append(
            or_(
                exists().where(m.c.item_id == i.c.id, m.c.event == where.event),
                story_of.where(st.c.events.like(f'%"{_like(where.event)}"%', escape="\\")),
            )
        )
    if where.severities is not None:
        allowed = list(where.severities)
        conds.append(
            or_(
                exists().where(m.c.item_id == i.c.id, m.c.severity.in_(allowed)),
                story_of.where(st.c.severity.in_(allowed)),
            )
        )
    return conds


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
