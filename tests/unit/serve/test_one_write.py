"""`aisle.serve.http.OneWriteProtocol`: one write per answer, and nothing held that must go out on its own.

A real uvicorn server on loopback runs the protocol; the transport each connection gets is the real one, counted
(`_Counted`), so the test sees how many writes an answer took.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from aisle.serve.http import OneWriteProtocol
from tests.redisserver import free_port

WRITES: list[bytes] = []


class _Counted:
    """The real transport, its writes recorded."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        WRITES.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _CountedProtocol(OneWriteProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_Counted(transport))  # type: ignore[arg-type]


async def _small(_request: Request) -> Response:
    return PlainTextResponse("hello")


async def _slow_stream(_request: Request) -> Response:
    async def chunks() -> Any:
        await asyncio.sleep(0.5)
        yield b"late"

    return StreamingResponse(chunks(), media_type="text/plain")


async def _echo(request: Request) -> Response:
    return PlainTextResponse((await request.body()).decode())


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    app = Starlette(routes=[Route("/small", _small, methods=["GET", "HEAD"]), Route("/slow", _slow_stream),
                            Route("/echo", _echo, methods=["POST"])])
    p = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=p, http=_CountedProtocol, log_level="error",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert time.time() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield p
    server.should_exit = True
    thread.join(10)


def _read_until(sock: socket.socket, marker: bytes, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_head_and_body_leave_in_one_write_on_a_kept_alive_connection(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for _ in range(3):
            WRITES.clear()
            sock.sendall(b"GET /small HTTP/1.1\r\nHost: t\r\n\r\n")
            data = _read_until(sock, b"hello")
            assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nhello")
            assert len(WRITES) == 1 and WRITES[0] == data


def test_a_head_without_a_body_is_not_held(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"HEAD /small HTTP/1.1\r\nHost: t\r\n\r\n")
        assert _read_until(sock, b"\r\n\r\n", timeout=2).startswith(b"HTTP/1.1 200 OK\r\n")
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        t0 = time.perf_counter()
        head = _read_until(sock, b"\r\n\r\n", timeout=2)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n") and time.perf_counter() - t0 < 0.4  # before the first chunk
        assert b"late" in _read_until(sock, b"late")


def test_100_continue_goes_out_before_the_body_arrives(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        assert _read_until(sock, b"\r\n\r\n", timeout=2).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"ping")
        assert _read_until(sock, b"ping").endswith(b"ping")


def test_an_answer_on_a_closing_connection_arrives_whole(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /small HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = _read_until(sock, b"never")  # until the server closes
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"hello")
