"""Serving the admin app with uvicorn inside the composition root's event loop.

``start_admin`` binds the socket itself (so a busy port raises ``OSError``
instead of uvicorn's ``sys.exit``), starts ``uvicorn.Server`` on the running
loop without its signal handlers (the composition root owns SIGTERM), with
lifespan off and the access log off: URLs carry one-time tokens, and an
access log would write them to disk. ``AdminServer.stop`` stops accepting,
lets in-flight requests finish (bounded) and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette

from admin.web.app import create_app
from admin.web.context import AdminServices

GRACEFUL_SHUTDOWN_SECONDS = 10


@dataclass
class AdminServer:
    server: uvicorn.Server
    sockets: list[socket.socket]
    task: asyncio.Task[None]

    @property
    def port(self) -> int:
        return int(self.sockets[0].getsockname()[1])

    @property
    def host(self) -> str:
        return str(self.sockets[0].getsockname()[0])

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.server.shutdown(sockets=self.sockets)


def _without_access_log(base: type[asyncio.Protocol]) -> type[asyncio.Protocol]:
    """The HTTP protocol class with its access log off for this server only.

    ``access_log=False`` only detaches the process-wide ``uvicorn.access``
    logger, which anything configuring logging later can re-attach; the
    protocol decides per connection from ``self.access_log``, so it is
    switched off there, where nothing else can turn it back on.
    """

    class QuietProtocol(base):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.access_log = False

    return QuietProtocol


def bind(host: str, port: int) -> socket.socket:
    """A listening socket for ``serve_app``; port 0 picks a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve_app(
    app: Starlette,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls_context: ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
) -> AdminServer:
    config = uvicorn.Config(
        app,
        loop="none",
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    config.load()
    config.http_protocol_class = _without_access_log(config.http_protocol_class)
    if tls_context is not None:
        config.ssl = tls_context
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    sockets = [sock if sock is not None else bind(host, port)]
    await server.startup(sockets=sockets)
    # main_loop refreshes the Date header once a second and watches should_exit.
    task = asyncio.get_running_loop().create_task(server.main_loop(), name="admin-http")
    return AdminServer(server, sockets, task)


async def start_admin(
    services: AdminServices,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tls_context: ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
) -> AdminServer:
    """Serve ``create_app(services)`` on ``host:port`` (port 0: any free port), or on ``sock``
    (already bound, e.g. so that the links in ``services`` can name its port)."""
    return await serve_app(
        create_app(services), host=host, port=port, tls_context=tls_context, sock=sock
    )
