"""Corrections on the story page: the `watcher story` actions, behind the token.

Only when `watcher serve` has a token and the request carries it (header, cookie or query) may
it correct anything; without a token the pages stay read-only, and behind a proxy alone too.
Every form carries a CSRF value derived from the token (HMAC), checked on each POST, and the
token cookie is SameSite=Strict: a page on another site cannot make an advocate's browser
post a correction.
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from watcher.web.base import WebBase

#: Longest reason or item key accepted from a form, and the longest form.
MAX_FIELD = 2000
MAX_BODY = 16 * 1024


class Corrections(WebBase):
    async def correct(self, request: Request) -> Response:
        """POST /stories/{id}/corrections: action=not_relevant|merge|split|undo, reason, and
        other (merge: the story merged into this one), item (split: the report's key) or
        correction (undo)."""
        from watcher.clock import utcnow
        from watcher.routing import Alerting
        from watcher.store.corrections import CorrectionError, NotFound
        from watcher.store.corrections import Corrections as Store

        if not self.may_correct(request):
            return JSONResponse({"error": "corrections need the token"}, status_code=403)
        story_id = self._story_id(request)
        if story_id is None:
            return JSONResponse({"error": "no such story"}, status_code=404)
        fields = await _form(request)
        if fields is None:
            return JSONResponse({"error": "expected a short urlencoded form"}, status_code=400)
        expected = self.csrf() or ""
        if not hmac.compare_digest(fields.get("csrf", "").encode(), expected.encode()):
            return JSONResponse({"error": "the form is stale or forged (CSRF)"}, status_code=403)
        reason = fields.get("reason", "").strip()
        action = fields.get("action", "")
        if action != "undo" and not reason:
            why = "say why (the reason is kept with the correction)"
            return await self._refused(request, story_id, why, 400)
        who = request.headers.get(self.proxy_user_header, "").strip()[:100] or "web"
        store = Store(self.views.store, Alerting.from_config(self.config))
        now = utcnow()

        def number(name: str) -> int:
            text = fields.get(name, "")
            if not (text.isascii() and text.isdigit() and len(text) <= 18):
                raise _BadForm(f"{name}: expected a number, got {text[:40]!r}")
            return int(text)

        def run() -> Any:
            if action == "not_relevant":
                return store.mark_not_relevant(story_id, by=who, reason=reason, now=now)
            if action == "merge":
                return store.merge(story_id, number("other"), by=who, reason=reason, now=now)
            if action == "split":
                key = fields.get("item", "")
                return store.split(story_id, key, by=who, reason=reason, now=now)
            if action == "undo":
                return store.undo(number("correction"), by=who, now=now)
            raise _BadForm(f"unknown action {action[:40]!r}")

        try:
            await run_in_threadpool(run)
        except _BadForm as exc:
            return await self._refused(request, story_id, str(exc), 400)
        except NotFound as exc:
            return await self._refused(request, story_id, str(exc), 404)
        except CorrectionError as exc:
            return await self._refused(request, story_id, str(exc), 409)
        # Post/redirect/get: a reload does not post twice.
        link = self._links(request)
        return RedirectResponse(link(f"/stories/{story_id}#corrections"), status_code=303)

    async def _refused(self, request: Request, story_id: int, why: str, status: int) -> Response:
        """The story page again, saying why the correction was not made, with `status` (a
        form's answer is a page, not JSON)."""
        return await run_in_threadpool(
            lambda: self._story_page(request, story_id, status=status, correction_error=why)
        )


class _BadForm(ValueError):
    """A form field that is not what the form sends (a number that is not one, no action)."""


async def _form(request: Request) -> dict[str, str] | None:
    """The POSTed form (application/x-www-form-urlencoded, at most MAX_BODY bytes and ten
    fields, each at most MAX_FIELD characters); None when it is not one."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    try:
        pairs = parse_qsl(body.decode("utf-8"), max_num_fields=10, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return None
    fields = dict(pairs)
    if any(len(v) > MAX_FIELD for v in fields.values()):
        return None
    return fields
