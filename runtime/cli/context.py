"""What every subcommand is handed: the engine root, and through it the daemon client (which
starts the daemon when none answers) and the engine configuration.

Nothing here imports asyncio or dataclasses: ``run --rm IMAGE true`` must start fast.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

from runtime.errors import ContainerRuntimeError, DaemonUnavailable

if TYPE_CHECKING:
    import subprocess

    from runtime.cli.wire import WireClient
    from runtime.config import EngineConfig

# Mirrors of runtime.config (which imports dataclasses); a unit test keeps them equal.
DEFAULT_ROOT = "/var/lib/playground"
SOCKET_NAME = "engine.sock"
DAEMON_LOG = "daemon.log"
DAEMON_LOCK = "daemon.lock"
START_TIMEOUT = 10.0


class Context:
    def __init__(self, root: str) -> None:
        self.root = root
        self._client: WireClient | None = None

    @property
    def socket_path(self) -> str:
        return os.path.join(self.root, SOCKET_NAME)

    @property
    def config(self) -> EngineConfig:
        from runtime.config import EngineConfig

        return EngineConfig(self.root)

    def client(self) -> WireClient:
        """The daemon's client; the daemon is started on the first refused connection."""
        if self._client is None:
            from runtime.cli.wire import WireClient

            self._client = WireClient(self.socket_path, start_daemon=self.start_daemon)
        return self._client

    def start_daemon(self) -> None:
        """Start ``python -m runtime --root ROOT daemon`` detached, and wait until it answers.

        An flock serialises CLIs that find no daemon at the same moment: the second one finds
        the first one's daemon answering and starts none.
        """
        import fcntl

        os.makedirs(self.root, mode=0o711, exist_ok=True)  # as the daemon makes it
        lock = os.open(os.path.join(self.root, DAEMON_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.answering():
                return
            process = self._spawn_daemon()
            deadline = time.monotonic() + START_TIMEOUT
            while not self.answering():
                if process.poll() is not None or time.monotonic() > deadline:
                    reason = "exited" if process.returncode is not None else "did not answer"
                    log = os.path.join(self.root, DAEMON_LOG)
                    raise DaemonUnavailable(self.socket_path, f"the daemon {reason}; see {log}")
                time.sleep(0.02)
        finally:
            os.close(lock)

    def _spawn_daemon(self) -> subprocess.Popen[bytes]:
        import subprocess

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        with open(os.path.join(self.root, DAEMON_LOG), "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "runtime", "--root", self.root, "daemon"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                close_fds=True,
                env=env,
            )

    def answering(self) -> bool:
        """Whether a daemon answers a ping on this root's socket."""
        from runtime.cli.wire import WireClient

        try:
            WireClient(self.socket_path).ping()
        except ContainerRuntimeError:
            return False
        return True
