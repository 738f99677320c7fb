"""Logs: one line per event, text or JSON, secrets and URL credentials redacted."""

from __future__ import annotations

import json
import logging

from watcher.log import JsonFormatter, RedactingFilter, TextFormatter


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("watcher", logging.ERROR, __file__, 1, msg, args, None)
    for k, v in extra.items():
        setattr(record, k, v)
    return record


def test_secrets_and_url_credentials_are_redacted() -> None:
    f = RedactingFilter(["tok-123456"])
    record = _record(
        "send to %s failed: %s", "tgram://tok-123456/1", "mailtos://user:pw@smtp.example.org"
    )
    assert f.filter(record)
    assert record.getMessage() == "send to tgram://***/1 failed: mailtos://***@smtp.example.org"


def test_json_line_carries_context() -> None:
    record = _record("poll failed", source="yonhap-en", action="poll")
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert data["message"] == "poll failed" and data["source"] == "yonhap-en"
    assert "\n" not in line


def test_text_line_carries_context() -> None:
    line = TextFormatter().format(_record("stored %d items", 3, source="dailynk-ko"))
    assert line.endswith("stored 3 items  [source=dailynk-ko]")
