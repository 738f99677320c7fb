"""An article page → its main text, through trafilatura (a maintained extraction library)."""

from __future__ import annotations

import logging

from watcher.items import MAX_TEXT, clean_text
from watcher.parsers import decode
from watcher.types import FetchResult

# trafilatura logs every page it finds too short at WARNING; that is not ours to report.
logging.getLogger("trafilatura").setLevel(logging.ERROR)
logging.getLogger("htmldate").setLevel(logging.ERROR)


def extract(result: FetchResult) -> str | None:
    """The article's main text (NFC, whitespace folded, capped), or None if none is found."""
    import trafilatura

    html, _codec = decode(result.body or b"", result.encoding)
    text = trafilatura.extract(
        html,
        url=result.final_url,
        include_comments=False,
        include_tables=False,
        favor_precision=True,
    )
    return clean_text(text, MAX_TEXT) or None if text else None
