"""Terminals as runc makes them: the container's init opens a PTY in its own devpts instance,
makes the peer its controlling terminal, and sends the master over a console socket with
SCM_RIGHTS. Without a console socket, ``run`` in the foreground proxies the master to its stdio.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import struct
import termios
import tty
from collections.abc import Iterator

TIOCGPTPEER = 0x5441
TIOCSPTLCK = 0x40045431


def open_pty(uid: int, gid: int, rows: int = 0, cols: int = 0) -> tuple[int, int]:
    """Open a PTY pair from the container's /dev/ptmx; returns (master, peer)."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    peer = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
    os.fchown(peer, uid, gid)
    if rows and cols:
        set_size(master, rows, cols)
    return master, peer


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def get_size(fd: int) -> tuple[int, int]:
    rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, cols


def make_controlling(peer: int) -> None:
    """setsid, TIOCSCTTY, and the peer on stdin, stdout and stderr."""
    os.setsid()
    fcntl.ioctl(peer, termios.TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(peer, target)
    if peer > 2:
        os.close(peer)


def send_master(sock: socket.socket, master: int, name: str = "/dev/ptmx") -> None:
    socket.send_fds(sock, [name.encode()], [master])


def recv_master(sock: socket.socket) -> int:
    _msg, fds, _flags, _addr = socket.recv_fds(sock, 4096, 1)
    if not fds:
        raise OSError("the console socket closed without sending a terminal")
    return fds[0]


def connect_console_socket(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock


@contextlib.contextmanager
def raw_stdin() -> Iterator[None]:
    if not os.isatty(0):
        yield
        return
    saved = termios.tcgetattr(0)
    tty.setraw(0)
    try:
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)


def proxy(master: int, child_done: int) -> None:
    """Copy stdin to the master and the master to stdout until the process has exited.

    ``child_done`` is a pidfd (readable when the process has exited).
    """
    if os.isatty(0):
        with contextlib.suppress(OSError):
            set_size(master, *get_size(0))

    def on_winch(_sig: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            set_size(master, *get_size(0))

    old = signal.signal(signal.SIGWINCH, on_winch)
    inputs = [master, 0, child_done]
    try:
        with raw_stdin():
            _pump(master, inputs)
    finally:
        signal.signal(signal.SIGWINCH, old)


def _pump(master: int, inputs: list[int]) -> None:
    while True:
        try:
            ready, _, _ = select.select(inputs, [], [])
        except InterruptedError:
            continue
        if master in ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            if not data:
                return
            _write_all(1, data)
            continue
        if 0 in ready:
            data = os.read(0, 65536)
            if not data:
                inputs.remove(0)
            else:
                _write_all(master, data)
        if inputs[-1] in ready and master not in ready:
            _drain(master)
            return


def _drain(master: int) -> None:
    os.set_blocking(master, False)
    with contextlib.suppress(OSError):
        while data := os.read(master, 65536):
            _write_all(1, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
