"""This process's terminal and stdio joined to an attach channel: output frames to stdout and
stderr, stdin to the container, the caller's window size as resizes (SIGWINCH), signals
forwarded to the container when it has no terminal (Docker's ``--sig-proxy``), and Docker's
detach keys (Ctrl-P Ctrl-Q) when it has one.

One ``select`` loop, no threads and no asyncio: signals arrive through ``set_wakeup_fd``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Callable, Iterator

from runtime.cli.wire import Channel
from runtime.errors import ContainerRuntimeError
from runtime.supervisor import protocol

READ_SIZE = 65536
DETACH_KEYS = b"\x10\x11"  # Ctrl-P Ctrl-Q
# Docker's sig-proxy forwards every signal but these few; these are the ones a shell sends.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def terminal_size() -> tuple[int, int] | None:
    """(rows, cols) of the caller's terminal, from stdin or else stdout; None if neither is."""
    from runtime.oci import terminal

    for fd in (0, 1):
        if os.isatty(fd):
            with contextlib.suppress(OSError):
                rows, cols = terminal.get_size(fd)
                if rows and cols:
                    return rows, cols
    return None


def _stdin_usable() -> bool:
    try:
        os.fstat(0)
    except OSError:
        return False
    return True


class Proxy:
    """Run with ``with proxy.installed(): proxy.pump()``; ``pump`` returns the exit code, or
    None when the user detached or the daemon went away without telling one."""

    def __init__(
        self,
        channel: Channel,
        *,
        stdin: bool,
        tty: bool,
        forward: Callable[[int], None] | None = None,
        detach_on_eof: bool = False,
    ) -> None:
        self.channel = channel
        self.reading_stdin = stdin and _stdin_usable()
        self.tty = tty
        self.forward = None if tty else forward
        self.detach_on_eof = detach_on_eof
        self.detached = False
        self._eof_detach = False
        self._held = b""
        self._wake = -1

    @contextlib.contextmanager
    def installed(self) -> Iterator[Proxy]:
        """Raw mode on the caller's terminal (with ``-i -t``) and the signal handlers."""
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        watched = [signal.SIGWINCH] if self.tty else []
        if self.forward is not None:
            watched += FORWARDED
        old = {sig: signal.signal(sig, _noop) for sig in watched}
        old_wake = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        self._wake = read_end
        try:
            with _raw_stdin() if self.tty and self.reading_stdin else contextlib.nullcontext():
                yield self
        finally:
            signal.set_wakeup_fd(old_wake)
            for sig, handler in old.items():
                signal.signal(sig, handler)
            os.close(read_end)
            os.close(write_end)
            self._wake = -1

    def resize(self) -> None:
        size = terminal_size() if self.tty else None
        if size is not None:
            with contextlib.suppress(OSError):
                self.channel.resize(*size)

    def pump(self) -> int | None:
        while True:
            # Frames may have arrived with the reply line, before select could see them.
            self._output_pending()
            if self.channel.ended:
                return self.channel.exit_code
            if self._eof_detach and self.channel.replayed:
                self.detached = True
                return None
            ready = self._wait()
            if self._wake in ready:
                self._signals()
            if 0 in ready:
                self._stdin()
                if self.detached:
                    return None
            if self.channel.fileno() in ready:
                self.channel.fill()

    def _wait(self) -> list[int]:
        readers = [self.channel.fileno()]
        readers += [self._wake] if self._wake >= 0 else []
        readers += [0] if self.reading_stdin else []
        ready, _, _ = select.select(readers, [], [])
        return ready

    def _output_pending(self) -> None:
        for kind, data in self.channel.pending():
            write_all(2 if kind == protocol.STDERR else 1, data)

    def _stdin(self) -> None:
        try:
            data = os.read(0, READ_SIZE)
        except OSError:
            data = b""
        if not data:
            self.reading_stdin = False
            if self.detach_on_eof:
                self._eof_detach = True
            elif not self.tty:
                with contextlib.suppress(OSError):
                    self.channel.close_stdin()
            return
        if self.tty:
            data = self._detach_keys(data)
        if data:
            with contextlib.suppress(OSError):
                self.channel.write(data)

    def _detach_keys(self, data: bytes) -> bytes:
        """Cut the input at Ctrl-P Ctrl-Q (and detach); hold back a trailing Ctrl-P."""
        data, self._held = self._held + data, b""
        cut = data.find(DETACH_KEYS)
        if cut >= 0:
            self.detached = True
            return data[:cut]
        if data.endswith(DETACH_KEYS[:1]):
            data, self._held = data[:-1], DETACH_KEYS[:1]
        return data

    def _signals(self) -> None:
        try:
            received = os.read(self._wake, 512)
        except BlockingIOError:
            return
        for signum in dict.fromkeys(received):
            if signum == signal.SIGWINCH:
                self.resize()
            elif self.forward is not None:
                with contextlib.suppress(ContainerRuntimeError):
                    self.forward(signum)


def _raw_stdin() -> contextlib.AbstractContextManager[None]:
    from runtime.oci import terminal

    return terminal.raw_stdin()


def _noop(signum: int, frame: object) -> None:
    """A handler, so that the signal reaches the wakeup fd instead of its default action."""
