"""Parsers: (source, FetchResult, fetched_at) → ParseResult, one module per source kind.

`PARSERS` is the registry: adding a kind is one module, one entry here and one model in
config.py (a test checks the three agree with the README).
"""

from __future__ import annotations

import codecs
import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from watcher.errors import DecodeError
from watcher.items import without_secrets
from watcher.types import FetchResult, Item


@dataclass(frozen=True, kw_only=True, slots=True)
class ParseResult:
    items: tuple[Item, ...] = ()
    #: One line saying why the body is not usable (HTML instead of a feed…), or None.
    error: str | None = None
    #: The items' rule matches, when the parsing process also matched them (else None).
    matches: tuple[Any, ...] | None = None
    #: Entries skipped because they could not be read, each with why (the rest still count).
    skipped: tuple[str, ...] = ()
    #: Invalid bytes replaced while decoding in the declared charset.
    replaced: int = 0
    #: One line saying the document was cut short (its items are the whole ones before the
    #: cut), or None: the poll reports it as a problem of the source.
    truncated: str | None = None


Parser = Callable[[Any, FetchResult, datetime], ParseResult]


#: The registry: source kind → the module whose `parse` reads it. Modules are imported on
#: first use, so a warm cycle of 304s never loads feedparser or bs4.
PARSERS: dict[str, str] = {
    "feed": "watcher.parsers.feed",
    "html": "watcher.parsers.html",
    "json": "watcher.parsers.json_api",
}

#: The source kinds that have a parser (a test checks config's kinds and the README agree).
PARSER_KINDS = tuple(PARSERS)


def parse(source: Any, result: FetchResult, fetched_at: datetime) -> ParseResult:
    """Parse a successful fetch with the parser of the source's kind; never raises."""
    parser = parser_for(source.kind)
    try:
        parsed = parser(source, result, fetched_at)
    except DecodeError as exc:
        return ParseResult(error=str(exc))
    except RecursionError:
        return ParseResult(error="document nested too deeply to parse")
    except MemoryError:  # a parse process over its budget (settings.parse_memory)
        size = len(result.body or b"")
        return ParseResult(error=f"parsing this {size} byte body needs more memory than allowed")
    except Exception as exc:  # a parser bug must not stop the cycle; say what happened
        # one line: some libraries explain on several (a selector, then a caret under it)
        told = " ".join(str(exc).split())
        return ParseResult(error=f"parser failed: {type(exc).__name__}: {told}"[:300])
    secrets = getattr(source, "secrets", None)
    if secrets and parsed.items:  # here, before anything stores, matches or shows an item
        items = tuple(without_secrets(item, secrets) for item in parsed.items)
        parsed = replace(parsed, items=items)
    return parsed


#: The selectors of `HtmlSelectors` that are CSS (date_attr names an attribute).
SELECTOR_KEYS = ("item", "title", "link", "date", "summary")


def selector_problems(selectors: Any) -> list[tuple[str, str]]:
    """(key, what is wrong) for each selector of an html source that is not CSS soupsieve (bs4's
    selector engine) can read: found by `watcher check`, not as a failed poll. Here rather than
    in `parsers.html`, so that checking does not load BeautifulSoup and lxml."""
    import soupsieve

    out = []
    for key in SELECTOR_KEYS:
        value = getattr(selectors, key, None)
        if not value:
            continue
        try:
            soupsieve.compile(value)
        except soupsieve.SelectorSyntaxError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else "malformed"
            out.append((key, f"not a CSS selector: {reason} in {value!r}"))
    return out


def parser_for(kind: str) -> Parser:
    """The parse function of a source kind (KeyError for a kind with no parser)."""
    parser: Parser = importlib.import_module(PARSERS[kind]).parse
    return parser


E = TypeVar("E")


def each_entry(
    entries: Iterable[E], build: Callable[[E], Item | None]
) -> tuple[tuple[Item, ...], tuple[str, ...]]:
    """(items, skipped): `build` each entry into an item; an entry that raises is skipped with
    its reason, never the document (one bad item must not cost a feed its other news)."""
    items: list[Item] = []
    skipped: list[str] = []
    for number, entry in enumerate(entries, start=1):
        try:
            item = build(entry)
        except Exception as exc:
            skipped.append(f"entry {number}: {type(exc).__name__}: {exc}"[:200])
            continue
        if item is not None:
            items.append(item)
    return tuple(items), tuple(skipped)


# --------------------------------------------------------------------------- decoding

#: Legacy labels → the superset codec that decodes what servers really send.
_SUPERSETS = {
    "euc-kr": "cp949",
    "euc_kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "ksc5601": "cp949",
    "uhc": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "big5": "big5hkscs",
    "shift_jis": "cp932",
    "sjis": "cp932",
    "iso-8859-1": "cp1252",
    "latin-1": "cp1252",
    "latin1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
}
_SINGLE_BYTE = {"cp1252", "iso8859-1", "latin-1", "ascii", "iso8859-15"}
_XML_DECL = re.compile(rb"^\s*<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']")
_META = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.I)


#: Codecs Python knows that are not document encodings: a server naming one is refused rather
#: than obeyed (punycode or unicode_escape would turn a feed into something else entirely).
_REFUSED = {"punycode", "idna", "raw_unicode_escape", "unicode_escape", "utf_7", "mbcs", "oem"}


def _codec(label: str | None, where: str = "declared") -> str | None:
    """The codec a label names (None: no label); DecodeError for an unknown label or one that
    is not a document encoding."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    label = _SUPERSETS.get(label, label)
    try:
        info = codecs.lookup(label)
    except LookupError:
        raise DecodeError(f"unknown charset {label!r} {where}") from None
    if info.name.replace("-", "_") in _REFUSED or not getattr(info, "_is_text_encoding", True):
        raise DecodeError(f"charset {label!r} {where} is not a document encoding: refused")
    return info.name


@dataclass(frozen=True, slots=True)
class Decoded:
    text: str
    codec: str
    #: Invalid bytes replaced by U+FFFD (the declared charset was kept, not second-guessed).
    replaced: int = 0


def decode(body: bytes, header_charset: str | None) -> tuple[str, str]:
    """Bytes → (text, codec); see `decode_body`."""
    decoded = decode_body(body, header_charset)
    return decoded.text, decoded.codec


def decode_body(body: bytes, header_charset: str | None) -> Decoded:
    """Bytes → text. Order: BOM, HTTP charset, XML declaration or <meta>, sniffing.

    A declared charset is kept: invalid bytes in it are replaced (and counted) rather than the
    whole document re-read in another encoding (one bad byte in a UTF-8 Korean feed must not
    turn every title into CP949 mojibake). The exception is a declared single-byte charset
    (ISO-8859-1 is a common server default), checked against detection, since Korean and
    Chinese outlets often serve CP949/GB18030 under it. Sniffing only when nothing is declared.
    An unknown or non-document charset is refused (DecodeError).
    """
    for bom, name in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if body.startswith(bom):
            return _replacing(body, name)
    head = body[:2048]
    declared = _codec(header_charset, "in the Content-Type header")
    if declared is None:
        m = _XML_DECL.match(head) or _META.search(head)
        declared = _codec(m.group(1).decode("ascii"), "in the document") if m else None
    if declared is None and head.lstrip().startswith(b"<?xml"):
        declared = "utf-8"  # XML without an encoding declaration is UTF-8 by definition
    if declared is not None:
        if declared in _SINGLE_BYTE and not body.isascii():
            sniffed = _sniff(body)
            if sniffed in ("utf-8", *(c for c, _, _ in _CJK_GUESSES)):
                declared = sniffed
        return _replacing(body, declared)
    try:
        return Decoded(body.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        pass
    return _replacing(body, _sniff(body) or "utf-8")


def _replacing(body: bytes, codec: str) -> Decoded:
    text = body.decode(codec, errors="replace")
    replaced = 0
    if "\ufffd" in text:  # those the document wrote itself survive errors="ignore"
        replaced = text.count("\ufffd") - body.decode(codec, errors="ignore").count("\ufffd")
    return Decoded(text.lstrip("\ufeff"), codec, replaced)


_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_HAN = re.compile(r"[\u4e00-\u9fff]")
_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
#: Legacy CJK codecs tried in order, with the script their text must mostly be in.
_CJK_GUESSES = (("cp949", _HANGUL, 0.8), ("cp932", _JAPANESE, 0.8), ("gb18030", _HAN, 0.6))


def _sniff(body: bytes) -> str | None:
    """UTF-8 if it decodes; else the legacy CJK codec whose text is mostly its own script
    (short Korean bodies defeat statistical detectors); else charset_normalizer's guess."""
    try:
        body.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    for codec, script, share in _CJK_GUESSES:
        try:
            text = body.decode(codec)
        except UnicodeDecodeError:
            continue
        wide = [ch for ch in text if ord(ch) > 0x2000]
        if wide and sum(1 for ch in wide if script.match(ch)) / len(wide) >= share:
            return codec
    from charset_normalizer import from_bytes

    best = from_bytes(body[:200_000]).best()
    name = _codec(best.encoding) if best is not None else None
    return None if name and name.startswith("utf-16") else name


def looks_like_html(text: str) -> bool:
    """True when a body that should be a feed is an HTML page."""
    head = text[:1024].lstrip().lower()
    head = re.sub(r"^<\?xml[^>]*>\s*", "", head)
    head = re.sub(r"^(<!--.*?-->\s*)+", "", head, flags=re.S)
    if head.startswith("<!doctype") and re.search(r"<(rss|feed|rdf:rdf)[\s>]", text[:4096].lower()):
        return False  # a feed behind a stray HTML doctype is still a feed
    return head.startswith(("<!doctype html", "<html", "<head", "<body"))
