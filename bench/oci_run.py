"""Run-to-exit of /bin/true: our CLI, crun and runc as whole processes, and our in-process
API from a warm Python process, side by side in one run (interleaved, median of N).

    python bench/oci_run.py [--runs N]

Installs crun and runc from Debian when they are missing. Prints one line per contender.
On a hybrid cgroup host whose cgroup2 mount holds controllers (crun refuses those), every
contender runs in the bench's private mount namespace, where that controller list reads empty
(see bench/common.py); the note line says so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402
from runtime.oci import selfexe  # noqa: E402


def ensure_peers() -> None:
    missing = [p for p in ("crun", "runc") if shutil.which(p) is None]
    if missing:
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True)


def make_bundle(base: Path) -> Path:
    return common.make_bundle(base, ["/bin/true"])


def time_cmd(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    selfexe.reexec_sealed()
    ensure_peers()
    from runtime.oci.container import Runtime

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        common.enter_private_mount_namespace()
        note = common.hide_hybrid_controllers(base)
        if note:
            print(note)
        bundle = make_bundle(base)
        state = base / "state"
        runtime = Runtime(str(state))
        py = sys.executable
        results: dict[str, list[float]] = {k: [] for k in ("ours-api", "ours-cli", "crun", "runc")}
        for _ in range(args.runs):
            cid = uuid.uuid4().hex[:12]
            start = time.perf_counter()
            code = runtime.run(cid, str(bundle))
            results["ours-api"].append(time.perf_counter() - start)
            assert code == 0
            results["ours-cli"].append(
                time_cmd(
                    [py, "-m", "runtime.oci", "--root", str(state), "run", "-b", str(bundle), cid]
                )
            )
            for peer in ("crun", "runc"):
                results[peer].append(
                    time_cmd([peer, "--root", str(base / peer), "run", "-b", str(bundle), cid])
                )
        for name, samples in results.items():
            print(common.line(name, samples, width=10))


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
