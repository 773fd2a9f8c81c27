"""Positions in a study's event log: ``<xid>-<id>``, the SSE event id.

Events are ordered by (xid, id): the writing transaction's id, then the row id. A stream resumes
strictly after a position, so a client that reconnects with the id of the last event it saw gets
every later event exactly once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from service.errors import BadCursor

_FORMAT = re.compile(r"^(\d{1,18})-(\d{1,18})$")


@dataclass(frozen=True, order=True)
class EventPosition:
    xid: int
    id: int

    @staticmethod
    def parse(text: str) -> EventPosition:
        """BadCursor unless ``text`` is ``<xid>-<id>`` as sent in an event's ``id:`` field."""
        match = _FORMAT.match(text.strip())
        if match is None:
            raise BadCursor(
                f"Last-Event-ID {text!r} is not an event id of this stream ('<xid>-<id>')"
            )
        return EventPosition(int(match.group(1)), int(match.group(2)))

    @staticmethod
    def before_transaction(xid: int) -> EventPosition:
        """The position before every event written by transaction ``xid`` and later ones."""
        return EventPosition(xid, 0)

    def __str__(self) -> str:
        return f"{self.xid}-{self.id}"
