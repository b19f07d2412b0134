"""Local stand-ins of the marketplaces, served over real HTTP on loopback for the connectors'
tests, the fault scenarios and the demo."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Callable, Coroutine, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson
import uvicorn
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve `app` until the block ends; yields its base URL (`port` 0: a free port)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Answers go out at once (accepted sockets inherit it): with Nagle's algorithm, an answer's
    # last segment waits for the client's delayed acknowledgement.
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(_hung_up_on(app), log_level="warning", lifespan="on", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it
            await asyncio.sleep(0.01)
        yield f"http://{host}:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        listener.close()


def _hung_up_on(app: ASGIApp) -> ASGIApp:
    """A client that goes away mid-request (a connector killed) is no error of the marketplace's."""

    async def served(scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.suppress(ClientDisconnect):
            await app(scope, receive, send)

    return served


LATE_S = 12.0
"""How long a late answer is held back by default: past the connectors' 10-second read timeout."""


@dataclass
class LateAnswers:
    """The faults every stand-in has besides its own: a share of answers held back `late_s` after
    the request was done (`late_answers`)."""

    late: float = 0.0
    late_s: float = LATE_S


def late_answers(app: ASGIApp, faults: Callable[[], LateAnswers], rng: random.Random) -> ASGIApp:
    """`app`, whose answers to the marketplace's API (not `/_standin/`) are, for a share of
    requests, held back some seconds after the request was done, as `faults()` says now. A
    client that times out first sees a failure, though a write it sent has landed."""

    async def answered(scope: Scope, receive: Receive, send: Send) -> None:
        now = faults()
        if scope["type"] != "http" or scope["path"].startswith("/_standin/") or not rng.random() < now.late:
            await app(scope, receive, send)
            return

        async def held(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                await asyncio.sleep(now.late_s)
            await send(message)

        await app(scope, receive, held)

    return answered


@contextlib.asynccontextmanager
async def in_background(work: Coroutine[Any, Any, None]) -> AsyncIterator[None]:
    """`work` runs while the block does, and is cancelled when it ends (a stand-in's lifespan)."""
    task = asyncio.create_task(work)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Buyers:
    """A stand-in's buyers: while it serves, they buy one unit every 1/`per_s` seconds on average
    (`sell_one`, which never sells below zero); none while `per_s` is 0."""

    def __init__(self, sell_one: Callable[[], Any], rng: random.Random) -> None:
        self.sell_one, self.rng = sell_one, rng
        self.per_s = 0.0

    def running(self, _app: Any) -> contextlib.AbstractAsyncContextManager[None]:
        return in_background(self._buy())

    async def _buy(self) -> None:
        while True:
            if self.per_s <= 0:
                await asyncio.sleep(0.2)
                continue
            await asyncio.sleep(self.rng.expovariate(self.per_s))
            self.sell_one()


class Controls:
    """What a test or the demo tells a stand-in whose faults are `state.faults` (a dataclass of
    type `Faults`): `PUT /_standin/faults` replaces them, `PUT /_standin/buyers` sets `per_s`."""

    Faults: type
    state: Any
    buyers: Buyers

    async def set_faults(self, request: Request) -> Response:
        self.state.faults = self.Faults(**orjson.loads(await request.body()))
        return Response(status_code=204)

    async def set_buyers(self, request: Request) -> Response:
        self.buyers.per_s = float(orjson.loads(await request.body())["per_s"])
        return Response(status_code=204)
