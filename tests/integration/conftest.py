"""Integration fixtures: each test gets its own state root, bundle and cgroup parent, and
everything it made (containers, mounts, cgroups) is removed afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli(state_root: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run the CLI with stdout and stderr in files, not pipes: a detached container keeps
    its inherited stdio open, and a pipe would make us wait for the container to exit."""
    cmd = [sys.executable, "-m", "runtime.oci", "--root", str(state_root), *args]
    kwargs.setdefault("timeout", 60)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        result = subprocess.run(cmd, cwd=ROOT, check=False, stdout=out, stderr=err, **kwargs)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(
            cmd,
            result.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


class Bundle:
    def __init__(self, path: Path, state_root: Path) -> None:
        self.path = path
        self.state_root = state_root
        self.config: dict[str, Any] = {}
        self.ids: list[str] = []

    def write(self) -> None:
        (self.path / "config.json").write_text(json.dumps(self.config))

    def new_id(self) -> str:
        cid = f"t-{uuid.uuid4().hex[:12]}"
        self.ids.append(cid)
        return cid

    def cgroups_path(self, cid: str) -> str:
        return f"/playground-test/{cid}"

    def run(
        self, args: list[str], *, cid: str | None = None, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Set process.args, write config.json and `run` it in the foreground."""
        cid = cid or self.new_id()
        self.config["process"]["args"] = args
        self.config["process"]["terminal"] = False
        self.config["linux"]["cgroupsPath"] = self.cgroups_path(cid)
        self.write()
        return cli(self.state_root, "run", "--bundle", str(self.path), cid, **kwargs)

    def cli(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return cli(self.state_root, *args, **kwargs)


def default_config() -> dict[str, Any]:
    from runtime.oci import spec

    config = spec.default_spec()
    config["root"]["readonly"] = False
    return config


@pytest.fixture
def bundle(fresh_rootfs: Path, tmp_path: Path) -> Iterator[Bundle]:
    state_root = tmp_path / "state"
    b = Bundle(fresh_rootfs.parent, state_root)
    b.config = default_config()
    yield b
    for cid in b.ids:
        cli(state_root, "delete", "--force", cid)
    leftovers = os.listdir(state_root) if state_root.exists() else []
    assert leftovers == [], f"state left behind: {leftovers}"


@pytest.fixture
def mounts_snapshot() -> Callable[[], list[str]]:
    def snapshot() -> list[str]:
        with open("/proc/self/mountinfo") as f:
            return sorted(line.split()[4] for line in f)

    return snapshot


@pytest.fixture(scope="session", autouse=True)
def _remove_test_cgroup_parents() -> Iterator[None]:
    """The tests' containers live under /playground-test (and the runtime's default
    /playground): remove those parents, once empty, when the session ends."""
    yield
    import glob

    for pattern in ("/sys/fs/cgroup/*/playground-test", "/sys/fs/cgroup/*/playground"):
        for parent in sorted(glob.glob(pattern)):
            for root, _dirs, _files in sorted(os.walk(parent), reverse=True):
                with contextlib.suppress(OSError):
                    os.rmdir(root)
