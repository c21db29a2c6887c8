"""An incremental Server-Sent Events parser (the WHATWG HTML "event stream" interpretation rules).

aiohttp has no SSE client, and the stream's bytes arrive in arbitrary pieces: one network read may
hold half an event or several. The rules applied (html.spec.whatwg.org, "Parsing an event stream"):
lines end in CRLF, LF or CR; a line starting with ':' is a comment (servers send them as pings);
`field: value` strips one leading space from the value; `data` lines of one event are joined with
'\n'; a blank line dispatches the event (an event with no data is dropped); fields other than
data/event/id/retry are ignored. A trailing event without its blank line is not dispatched: the
stream ended in the middle of it, which the client reports.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    data: str
    event: str = "message"


class SSEParser:
    """Feed bytes as they arrive; get back the events they complete."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
        self._buffer = ""
        self._data: list[str] = []
        self._event = ""
        self._pending_cr = False  # a CR ended the last piece: a LF starting the next belongs to it

    def feed(self, chunk: bytes) -> list[Event]:
        text = self._decoder.decode(chunk)
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]
        self._pending_cr = text.endswith("\r")
        self._buffer += text
        events: list[Event] = []
        # splitlines() would also split on \x0b, \x1c, \u2028 ...: only CR, LF and CRLF end an SSE line.
        buf = self._buffer
        if "\r" in buf:
            buf = buf.replace("\r\n", "\n").replace("\r", "\n")
        *lines, self._buffer = buf.split("\n")
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    @property
    def partial(self) -> bool:
        """Whether an unfinished event (or line) is held: the stream stopped in the middle of it."""
        return bool(self._buffer or self._data)

    def _line(self, line: str) -> Event | None:
        if line.startswith("data: "):  # the common case first: one data line per event
            self._data.append(line[6:])
            return None
        if line == "":
            if not self._data:
                self._event = ""
                return None
            event = Event("\n".join(self._data), self._event or "message")
            self._data, self._event = [], ""
            return event
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None
