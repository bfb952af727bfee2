"""Serve the viewer with the standard library's WSGI server, one thread per request."""

from __future__ import annotations

import ipaddress
import logging
import socketserver
from collections.abc import Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from pyama_flow.viewer.app import LOOPBACK_NAMES, ViewerApp

log = logging.getLogger("pyama_flow.viewer")


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """``wsgiref``'s server answering each request in its own (daemon) thread."""

    daemon_threads = True
    allow_reuse_address = True


class QuietHandler(WSGIRequestHandler):
    """Request lines go to the ``pyama_flow.viewer`` logger (errors as warnings)."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        level = logging.WARNING if str(code).startswith(("4", "5")) else logging.DEBUG
        log.log(level, '"%s" %s', self.requestline, code)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names the loopback interface (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> Iterable[str] | None:
    """Host names the app accepts: the loopback names when bound to loopback, else any."""
    if is_loopback(host):
        return set(LOOPBACK_NAMES) | {host}
    return None


def make_viewer_server(results_dir: str, host: str = "127.0.0.1", port: int = 8765,
                       cache_mb: int = 64, token: str | None = None) -> ThreadingWSGIServer:
    """A ready, bound server for ``results_dir`` (``port=0`` picks a free port).

    ``token``: the access token every request must present (see
    :class:`~pyama_flow.viewer.app.ViewerApp`); ``None`` serves without one.

    Call ``serve_forever()`` on it and ``shutdown()`` / ``server_close()`` to stop.
    """
    app = ViewerApp(results_dir, allowed_hosts=allowed_hosts(host), cache_bytes=cache_mb * 2**20,
                    token=token)
    return make_server(host, port, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler)
