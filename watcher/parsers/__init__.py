"""Parsers: (source, FetchResult, fetched_at) → ParseResult, one module per source kind.

`PARSERS` is the registry: adding a kind is one module, one entry here and one model in
config.py (a test checks the three agree with the README).
"""

from __future__ import annotations

import codecs
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from watcher.types import FetchResult, Item


@dataclass(frozen=True, kw_only=True, slots=True)
class ParseResult:
    items: tuple[Item, ...] = ()
    #: One line saying why the body is not usable (HTML instead of a feed…), or None.
    error: str | None = None
    #: The items' rule matches, when the parsing process also matched them (else None).
    matches: tuple[Any, ...] | None = None


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
        return parser(source, result, fetched_at)
    except RecursionError:
        return ParseResult(error="document nested too deeply to parse")
    except Exception as exc:  # a parser bug must not stop the cycle; say what happened
        return ParseResult(error=f"parser failed: {type(exc).__name__}: {exc}"[:300])


def parser_for(kind: str) -> Parser:
    """The parse function of a source kind (KeyError for a kind with no parser)."""
    parser: Parser = importlib.import_module(PARSERS[kind]).parse
    return parser


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


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().lower()
    label = _SUPERSETS.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def decode(body: bytes, header_charset: str | None) -> tuple[str, str]:
    """Bytes → (text, codec). Order: BOM, HTTP charset, XML declaration or <meta>, sniffing.

    A declared single-byte charset (ISO-8859-1 is a common server default) is checked against
    detection, since Korean and Chinese outlets often serve CP949/GB18030 under it.
    """
    for bom, name in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if body.startswith(bom):
            return body.decode(name, errors="replace").lstrip("\ufeff"), name
    head = body[:2048]
    declared = [_codec(header_charset)]
    m = _XML_DECL.match(head) or _META.search(head)
    declared.append(_codec(m.group(1).decode("ascii")) if m else None)
    for candidate in declared:
        if candidate is None:
            continue
        if candidate in _SINGLE_BYTE and not body.isascii():
            sniffed = _sniff(body)
            if sniffed in ("utf-8", *(c for c, _, _ in _CJK_GUESSES)):
                candidate = sniffed
        try:
            return body.decode(candidate), candidate
        except (UnicodeDecodeError, LookupError):
            continue
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    name = _sniff(body) or "cp949"
    return body.decode(name, errors="replace"), name


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
    return head.startswith(("<!doctype html", "<html", "<head", "<body"))
