"""Pull a three-layer image of about 50 MB from a local docker-registry: skopeo's download
alone (``skopeo copy docker://... oci:DIR``) against our pull (download, verify and unpack),
cold (fresh store) and warm (every layer present), side by side in one run, median of N.

    python bench/pull.py [--runs N] [--mb SIZE]

Ours is timed in-process (a warm Python, as the daemon runs it) and as a whole process
(interpreter start and imports included, as the CLI runs it). Needs docker-registry and
skopeo (``make deps``). Everything listens on 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from runtime.image.manifest import parse_manifest  # noqa: E402
from runtime.image.reference import parse_reference  # noqa: E402
from runtime.image.store import ImageStore  # noqa: E402
from runtime.registry import RegistryConfig, RegistrySession, pull_image, push  # noqa: E402
from runtime.registry.download import download_blob  # noqa: E402
from runtime.registry.manifests import fetch_manifest  # noqa: E402
from runtime.registry.session import Repository  # noqa: E402
from tests.integration.oci_layouts import Layer, build_image, make_layer  # noqa: E402
from tests.integration.registry_support import SKOPEO, run_registry  # noqa: E402

CHILD = """
import asyncio, sys
from runtime.image.store import ImageStore
from runtime.registry import RegistryConfig, pull_image
asyncio.run(pull_image(ImageStore(sys.argv[1]), sys.argv[2], config=RegistryConfig(), auth=None))
"""


def make_layers(base: Path, total_mb: int) -> list[Layer]:
    """Three layers of 50%, 30% and 20% of the size, random (incompressible) files."""
    layers = []
    for number, share in enumerate((0.5, 0.3, 0.2)):
        source = base / f"layer{number}"
        (source / "data").mkdir(parents=True)
        size = int(total_mb * share * 1_000_000)
        for part in range(8):
            (source / "data" / f"file{part}.bin").write_bytes(os.urandom(size // 8))
        layers.append(make_layer(source, "gzip"))
    return layers


def seed(host: str, base: Path, total_mb: int) -> str:
    store = ImageStore(str(base / "seed-store"))
    built = build_image(make_layers(base / "src", total_mb))
    for layer in built.layers:
        store.put_blob(layer.blob)
        store.ensure_layer(layer.digest, expected_diff_id=layer.diff_id)
    store.put_blob(built.config)
    digest = store.put_blob(built.manifest)
    store.add_image(
        json.loads(built.manifest),
        json.loads(built.config),
        tags=["bench/img:v1"],
        manifest_digest=digest,
    )
    ref = f"{host}/bench/img:v1"
    started = time.perf_counter()

    async def run() -> None:
        async for _ in push(store, "bench/img:v1", ref, config=RegistryConfig(), auth=None):
            pass

    asyncio.run(run())
    size = sum(len(layer.blob) for layer in built.layers)
    print(f"pushed {size / 1e6:.1f} MB in 3 layers in {time.perf_counter() - started:.2f} s")
    return ref


async def download_only(store: ImageStore, ref: str) -> None:
    """Our blob downloads alone (verified and stored, not unpacked): skopeo's job."""
    reference = parse_reference(ref)
    async with RegistrySession(RegistryConfig()) as session:
        endpoint = session.config.endpoints(reference.domain)[-1]
        scope = (f"repository:{reference.path}:pull",)
        repo = Repository(session, endpoint, reference.path, scope)
        manifest = await fetch_manifest(repo, reference.tag or "latest", what=ref)
        _, layers = parse_manifest(manifest.document)
        await asyncio.gather(
            *(download_blob(repo, store, layer, lambda *_: None) for layer in layers)
        )


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--mb", type=int, default=50)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-pull-"))
    results: dict[str, list[float]] = {}
    try:
        with run_registry(base / "registry") as registry:
            ref = seed(registry.host, base, args.mb)
            for run in range(args.runs):
                for name, action in contenders(base, run, ref).items():
                    results.setdefault(name, []).append(timed(action))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for name, times in results.items():
        print(
            f"{name:<40} median {statistics.median(times) * 1000:8.1f} ms   "
            f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}, n={len(times)})"
        )


def contenders(base: Path, run: int, ref: str) -> dict[str, Callable[[], object]]:
    store = str(base / f"store-{run}")
    process_store = str(base / f"process-store-{run}")
    config = RegistryConfig()

    def ours() -> object:
        return asyncio.run(pull_image(ImageStore(store), ref, config=config, auth=None))

    def ours_process() -> object:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run(
            [sys.executable, "-c", CHILD, process_store, ref], check=True, env=env
        )

    def ours_download() -> object:
        return asyncio.run(download_only(ImageStore(str(base / f"download-{run}")), ref))

    def skopeo() -> object:
        dest = f"oci:{base / f'skopeo-{run}'}:v1"
        cmd = [SKOPEO, "--insecure-policy", "copy", "--quiet", "--src-tls-verify=false"]
        return subprocess.run([*cmd, f"docker://{ref}", dest], check=True)

    return {
        "skopeo copy (download only)": skopeo,
        "ours download only, in-process": ours_download,
        "ours cold, in-process (download+unpack)": ours,
        "ours warm, in-process": ours,
        "ours cold, whole process": ours_process,
        "ours warm, whole process": ours_process,
    }


if __name__ == "__main__":
    main()
