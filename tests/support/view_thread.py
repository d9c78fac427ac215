"""The view's Bokeh server in a thread of its own, for the browser tests and the live-view benchmark."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

from phasetwin.view.server import view_server

if TYPE_CHECKING:
    from bokeh.server.server import Server

    from phasetwin.view.timeline import Timeline


def serve_in_thread(timeline: Timeline, *, timeout_s: float = 30.0) -> tuple[Server, threading.Thread]:
    """A view server of ``timeline`` on a free loopback port (``server.port``), looping in a daemon thread with
    its own event loop. Stop it with ``server.io_loop.add_callback(server.stop)``, then ``loop.stop``."""
    ready = threading.Event()
    box: dict[str, Server] = {}

    def run() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        server = view_server(timeline, port=0)
        box["server"] = server
        ready.set()
        server.io_loop.start()

    thread = threading.Thread(target=run, name="view-server", daemon=True)
    thread.start()
    assert ready.wait(timeout_s), f"the view server did not start within {timeout_s:g} s"
    return box["server"], thread
