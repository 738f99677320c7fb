"""The Atom and JSON feeds of stories (same filters as the timeline)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from watcher import __version__
from watcher.config import EVENT_NAMES
from watcher.types import StoredStory
from watcher.web.api import story_json
from watcher.web.base import WebBase


class Feeds(WebBase):
    def _story_link(self, request: Request, story: StoredStory) -> str:
        return self._absolute(f"/stories/{story.id}")

    def _summary(self, story: StoredStory) -> str:
        parts = [", ".join(EVENT_NAMES.get(e, e) for e in story.events), story.severity.upper()]
        if story.people is not None:
            parts.append(f"{story.people} people")
        if story.places:
            parts.append(", ".join(story.places))
        outlets = ", ".join(self.names.get(o, o) for o in story.outlets)
        return " · ".join(parts) + (f" — reported by {outlets}" if outlets else "")

    async def atom(self, request: Request) -> Response:
        stories = self.views.stories(self._filters(request, limit=100))
        ns = "http://www.w3.org/2005/Atom"
        ET.register_namespace("", ns)
        feed = ET.Element(f"{{{ns}}}feed")
        ET.SubElement(feed, f"{{{ns}}}title").text = "watcher: forced repatriation early warning"
        me = self._absolute(request.url.path, self._query(request))
        ET.SubElement(feed, f"{{{ns}}}id").text = me
        ET.SubElement(feed, f"{{{ns}}}link", rel="self", href=me)
        ET.SubElement(feed, f"{{{ns}}}link", rel="alternate", href=self._absolute("/"))
        updated = max((s.updated_at for s in stories), default=None) or self.now()
        ET.SubElement(feed, f"{{{ns}}}updated").text = updated.isoformat()
        author = ET.SubElement(feed, f"{{{ns}}}author")
        ET.SubElement(author, f"{{{ns}}}name").text = "watcher"
        ET.SubElement(feed, f"{{{ns}}}generator", version=__version__).text = "watcher"
        for story in stories:
            entry = ET.SubElement(feed, f"{{{ns}}}entry")
            link = self._story_link(request, story)
            ET.SubElement(entry, f"{{{ns}}}id").text = link
            ET.SubElement(
                entry, f"{{{ns}}}title"
            ).text = f"[{story.severity.upper()}] {story.title}"
            ET.SubElement(entry, f"{{{ns}}}link", rel="alternate", href=link)
            ET.SubElement(entry, f"{{{ns}}}updated").text = story.updated_at.isoformat()
            ET.SubElement(entry, f"{{{ns}}}published").text = story.first_seen_at.isoformat()
            ET.SubElement(entry, f"{{{ns}}}summary").text = self._summary(story)
            for event in story.events:
                ET.SubElement(entry, f"{{{ns}}}category", term=event)
        body = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
        return Response(body, media_type="application/atom+xml; charset=utf-8")

    async def json_feed(self, request: Request) -> Response:
        stories = self.views.stories(self._filters(request, limit=100))
        feed = {
            "version": "https://jsonfeed.org/version/1.1",
            "title": "watcher: forced repatriation early warning",
            "home_page_url": self._absolute("/"),
            "feed_url": self._absolute(request.url.path, self._query(request)),
            "items": [
                {
                    "id": self._story_link(request, s),
                    "url": self._story_link(request, s),
                    "title": f"[{s.severity.upper()}] {s.title}",
                    "content_text": self._summary(s),
                    "date_published": s.first_seen_at.isoformat(),
                    "date_modified": s.updated_at.isoformat(),
                    "tags": list(s.events),
                    "_watcher": story_json(s),
                }
                for s in stories
            ],
        }
        return JSONResponse(feed, media_type="application/feed+json")
