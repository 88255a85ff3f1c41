"""The sandbox over HTTP: a threading server on a local port, and :func:`serve`."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from .answers import Answer, error_answer, new_request_id
from .faults import Fault
from .state import Sandbox

# One logger for the whole sandbox, named after the package.
log = logging.getLogger("mediaprep.api.sandbox")

DEFAULT_HOST: Final = "127.0.0.1"


class _Handler(BaseHTTPRequestHandler):
    """Hands each request to the sandbox and writes its answer; logs only at debug level."""

    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this, delayed ACKs add ~40 ms per answer.
    disable_nagle_algorithm = True
    server_version = "mediaprep-sandbox"
    sys_version = ""

    def _serve(self) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        self._send(self.server.sandbox.handle(self.command, self.path, headers, self.rfile))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def _send(self, answer: Answer) -> None:
        if answer.drop:
            self.close_connection = True
            return
        try:
            self.send_response(answer.status)
            for name, value in answer.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            if answer.close:
                self.send_header("Connection", "close")
            self.end_headers()
            if getattr(self, "command", None) != "HEAD":
                self.wfile.write(answer.body)
        except OSError:
            # The client is gone (it timed out while a slow fault slept): nothing to answer.
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer a request http.server could not parse, with the error envelope too."""
        text = message or HTTPStatus(code).phrase
        self._send(error_answer(code, text, new_request_id(), close=True))

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that carries the sandbox, on IPv4 or IPv6."""

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class SandboxServer:
    """The sandbox on a local port; a context manager that starts and stops it.

    ``port=0`` takes a free port; :attr:`url` tells which. :attr:`sandbox` is the state.

    Raises:
        ValueError: ``polls_to_complete`` is below 1.
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = 0,
        faults: Iterable[Fault] = (),
        polls_to_complete: int = 2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.port = port
        self.sandbox = Sandbox(faults, polls_to_complete=polls_to_complete, clock=clock)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321``.

        Raises:
            RuntimeError: the server is not started.
        """
        if self._httpd is None:
            raise RuntimeError("the sandbox server is not started")
        host, port = self._httpd.server_address[:2]
        shown = f"[{host!s}]" if ":" in str(host) else str(host)
        return f"http://{shown}:{port}"

    def _bind(self) -> _Server:
        if self._httpd is not None:
            raise RuntimeError("the sandbox server is already started")
        self._httpd = _Server((self.host, self.port), self.sandbox)
        return self._httpd

    def start(self) -> SandboxServer:
        """Bind and serve in a background thread.

        Raises:
            OSError: the address cannot be bound (e.g. the port is in use).
            RuntimeError: the server is already started.
        """
        httpd = self._bind()
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="mediaprep-sandbox",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Bind and serve in this thread until KeyboardInterrupt, which ends it quietly.

        Raises:
            OSError: the address cannot be bound (e.g. the port is in use).
            RuntimeError: the server is already started.
        """
        httpd = self._bind()
        try:
            if on_ready is not None:
                on_ready(self.url)
            httpd.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.sandbox.stop()
            httpd.server_close()
            self._httpd = None

    def stop(self) -> None:
        """Stop serving and close the socket; does nothing when not started."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self.sandbox.stop()
        httpd.shutdown()
        if thread is not None:
            thread.join()
        httpd.server_close()
        self._httpd = self._thread = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve(
    host: str,
    port: int,
    faults: Iterable[Fault] = (),
    on_ready: Callable[[str], None] | None = None,
    *,
    polls_to_complete: int = 2,
) -> None:
    """Serve the sandbox on ``host:port`` until KeyboardInterrupt (for ``mediaprep sandbox``).

    Args:
        host: the address to listen on; only that one (loopback unless told otherwise).
        port: the port; 0 takes a free one.
        faults: faults to inject.
        on_ready: called with the base URL once the socket listens.
        polls_to_complete: GETs of a task until it is completed.

    Raises:
        OSError: the address cannot be bound (e.g. the port is in use).
        ValueError: ``polls_to_complete`` is below 1.
    """
    SandboxServer(host, port, faults, polls_to_complete).serve_forever(on_ready)
