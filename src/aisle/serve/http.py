"""uvicorn's httptools protocol, sending each answer's head and body in one write.

Why: uvicorn writes an answer's status line and headers when the app starts the answer and its body when the app
sends it: two `send` system calls per request, and on loopback two TCP segments, each waking the client (on a
machine whose cores the client shares, that wake-up is the server's loss too). py-spy put the two writes at a sixth
of a worker's CPU per recommendation (benchmarks/RESULTS.md). `aisle serve` runs this protocol (`uvicorn.run(http=
"aisle.serve.http:OneWriteProtocol")`): a head is held until the body that follows it in the same step of the
event loop and both go out in one write; a head with nothing after it (an answer to HEAD, `100 Continue`, a
stream whose first chunk is not ready) goes out at the end of the loop's current step, so nothing waits longer
than that, and order is kept: anything written, or a close, after a held head sends the head first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_HEAD_START, _HEAD_END = b"HTTP/1.", b"\r\n\r\n"


class _OneWrite:
    """The connection's transport for uvicorn, holding a response head for the body that follows it."""

    __slots__ = ("_held", "_later", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._held: bytes | None = None
        self._later: asyncio.Handle | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._held is not None:
            data, self._held = self._held + bytes(data), None
            if self._later is not None:
                self._later.cancel()
                self._later = None
            self._transport.write(data)
        elif isinstance(data, bytes) and data.startswith(_HEAD_START) and data.endswith(_HEAD_END):
            self._held = data
            self._later = self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        held, self._held, self._later = self._held, None, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's own
        return getattr(self._transport, name)


class OneWriteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over `_OneWrite`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_OneWrite(transport, self.loop))  # type: ignore[arg-type]


__all__ = ["OneWriteProtocol"]
