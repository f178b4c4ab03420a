"""Running the sandbox: in a background thread for tests, or in the foreground for the CLI.

The socket is bound here, before uvicorn starts, so that `port=0` works and the real port is
known (and already accepting into the backlog) by the time anyone asks for the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Generator
from types import TracebackType

import uvicorn

from routera_archive_sandbox.app import create_app
from routera_archive_sandbox.config import SandboxConfig
from routera_archive_sandbox.gate import AnswerGate
from routera_archive_sandbox.state import SandboxState

logger = logging.getLogger(__name__)

# How long uvicorn lets in-flight requests finish on shutdown before cancelling them (a `hang`
# fault would otherwise hold the server open until its client gives up).
GRACEFUL_SHUTDOWN_S = 1
STARTUP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class _Server(uvicorn.Server):
    """uvicorn's server, minus re-raising the signal that stopped it.

    uvicorn re-raises a captured SIGINT/SIGTERM after its graceful shutdown, which turns a clean
    Ctrl+C into a KeyboardInterrupt traceback (or a death by SIGTERM) in the CLI. Here a signal
    just asks for shutdown; a second SIGINT forces it, as in uvicorn.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield  # signals can only be handled in the main thread; tests stop us explicitly
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def main_loop(self) -> None:
        """uvicorn's loop, looking for a stop every 10 ms instead of every 100 ms: the test
        suite starts and stops a sandbox hundreds of times, and each stop waited for a tick."""
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 1) % 864000
            await asyncio.sleep(0.01)
            should_exit = await self.on_tick(counter)


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host:port` (port 0: any free port)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):  # listening everywhere: loopback is the address that works
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn_server(config: SandboxConfig, state: SandboxState, gate: AnswerGate) -> _Server:
    uv_config = uvicorn.Config(
        create_app(config, state, gate),
        log_level="warning",
        log_config=None,  # do not let uvicorn rewrite the host program's logging configuration
        lifespan="off",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    return _Server(uv_config)


class SandboxServer:
    """A sandbox served from a background thread with its own event loop.

    Usage: `with SandboxServer(SandboxConfig(port=0)) as sandbox: httpx.get(sandbox.url + ...)`.
    `state` is the live `SandboxState`, readable from the test's thread; `gate` holds chosen
    requests until the test lets them through (`AnswerGate`).
    """

    def __init__(self, config: SandboxConfig | None = None, state: SandboxState | None = None):
        self.config = config if config is not None else SandboxConfig()
        self.state = state if state is not None else SandboxState.from_config(self.config)
        self.gate = AnswerGate()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._url: str | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:54321` (only once started)."""
        if self._url is None:
            raise RuntimeError("the sandbox server is not started")
        return self._url

    @property
    def port(self) -> int:
        """The port actually bound (the free one the OS picked when `config.port` is 0)."""
        if self._socket is None:
            raise RuntimeError("the sandbox server is not started")
        return int(self._socket.getsockname()[1])

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> SandboxServer:
        """Serve in a background thread; return once connections are accepted."""
        if self._thread is not None:
            raise RuntimeError("the sandbox server is already started")
        self._socket = _bind(self.config.host, self.config.port)
        self._url = _url(self._socket)
        self._server = _uvicorn_server(self.config, self.state, self.gate)
        self._thread = threading.Thread(
            target=self._run, name=f"routera-sandbox:{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the sandbox server did not start: {self._error!r}")
            time.sleep(0.005)
        logger.info("sandbox serving at %s", self._url)
        return self

    def _run(self) -> None:
        assert self._server is not None and self._socket is not None
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # reported by start(); a thread must not die silently
            self._error = exc
            logger.exception("sandbox server crashed")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop serving and wait for the thread (in-flight requests get `GRACEFUL_SHUTDOWN_S`)."""
        server, thread = self._server, self._thread
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive() and server is not None:
                server.force_exit = True
                thread.join(timeout)
            if thread.is_alive():
                logger.warning("sandbox server thread did not stop within %.1fs", 2 * timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_forever(
    config: SandboxConfig,
    on_ready: Callable[[str], None] | None = None,
    state: SandboxState | None = None,
) -> None:
    """Serve in the calling (main) thread until SIGINT or SIGTERM, then return normally.

    `on_ready(url)` is called once connections are accepted (the CLI prints the URL there).
    """
    state = state if state is not None else SandboxState.from_config(config)
    sock = _bind(config.host, config.port)
    url = _url(sock)
    server = _uvicorn_server(config, state, AnswerGate())

    async def main() -> None:
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.005)
        if server.started and on_ready is not None:
            try:
                on_ready(url)
            except BaseException:
                server.should_exit = True
                await serving
                raise
        await serving

    try:
        asyncio.run(main())
    finally:
        sock.close()
    logger.info("sandbox at %s stopped", url)
