"""The Bokeh server that serves the view: one application at ``/``, one ``ViewSession`` per browser tab, all
over the same ``Timeline``; bound to loopback unless told otherwise."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bokeh.application import Application
from bokeh.application.handlers.function import FunctionHandler
from bokeh.document import Document
from bokeh.server.server import Server

from phasetwin.view.document import make_document
from phasetwin.view.timeline import Timeline

log = logging.getLogger(__name__)


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port free on ``address`` now (the websocket origins must name the port before the server binds)."""
    import socket

    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def view_server(timeline: Timeline, *, port: int = 5006, address: str = "127.0.0.1",
                allow_origins: list[str] | None = None) -> Server:
    """A started (not yet looping) Bokeh server for ``timeline``; ``server.port`` is the bound port (0 picks a
    free one). Run it with ``server.io_loop.start()`` and end it with ``server.io_loop.stop()``."""

    def session(doc: Document) -> None:
        make_document(timeline, doc)

    if port == 0:
        port = free_port(address)
    origins = allow_origins or [f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"]
    server = Server({"/": Application(FunctionHandler(session))}, port=port, address=address,
                    allow_websocket_origin=origins, check_unused_sessions_milliseconds=2000,
                    unused_session_lifetime_milliseconds=5000)
    server.start()
    return server


def serve(timeline: Timeline, *, port: int, address: str = "127.0.0.1",
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM)."""
    import signal

    server = view_server(timeline, port=port, address=address)
    url = f"http://{address}:{server.port}/"
    if on_ready is not None:
        on_ready(url)
    signal.signal(signal.SIGTERM, lambda signum, frame: server.io_loop.add_callback_from_signal(server.io_loop.stop))
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
