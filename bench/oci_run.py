"""Run-to-exit of /bin/true: our CLI, crun and runc as whole processes, and our in-process
API from a warm Python process, side by side in one run (interleaved, median of N).

    python bench/oci_run.py [--runs N]

Installs crun and runc from Debian when they are missing. Prints one line per contender.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime.oci import selfexe  # noqa: E402


def ensure_peers() -> None:
    missing = [p for p in ("crun", "runc") if shutil.which(p) is None]
    if missing:
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True)


def make_bundle(base: Path) -> Path:
    from runtime.oci import spec
    from tests.conftest import build_busybox_rootfs

    bundle = base / "bundle"
    build_busybox_rootfs(bundle / "rootfs")
    config = spec.default_spec()
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


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
            samples.sort()
            p90 = samples[int(len(samples) * 0.9) - 1]
            print(
                f"{name:10s} median {statistics.median(samples) * 1000:7.2f} ms   "
                f"p90 {p90 * 1000:7.2f} ms   (n={len(samples)})"
            )


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
