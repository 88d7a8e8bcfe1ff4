"""Garbage collection of an engine root: orphaned overlay mounts, container folders,
cgroups, low-level runtime states, half-written blobs, unreferenced layers and orphaned
volume mounts. Nothing that a known container uses is touched."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from typing import TYPE_CHECKING, Any

from runtime.container import rootfs as overlay
from runtime.container.store import RECORD
from runtime.errors import ContainerRuntimeError
from runtime.oci import cgroups
from runtime.oci.container import Runtime

if TYPE_CHECKING:
    from runtime.supervisor.engine import Engine

logger = logging.getLogger(__name__)


def _known(engine: Engine) -> set[str]:
    return {r.id for r in engine.containers.all()}


def orphan_container_dirs(engine: Engine, known: set[str]) -> list[str]:
    removed = []
    base = engine.config.containers_dir
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        path = os.path.join(base, name)
        if name in known and os.path.exists(os.path.join(path, RECORD)):
            continue
        overlay.unmount_overlay(path)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(name)
    return removed


def orphan_cgroups(engine: Engine, known: set[str]) -> list[str]:
    parent = cgroups.open_cgroup(engine.cgroup_parent)
    names: set[str] = set()
    for directory in parent.dirs():
        with contextlib.suppress(OSError):
            names.update(n for n in os.listdir(directory.path) if len(n) == 64)
    removed = []
    for name in sorted(names - known):
        with contextlib.suppress(ContainerRuntimeError, OSError):
            cgroups.open_cgroup(f"{engine.cgroup_parent}/{name}").destroy()
            removed.append(name)
    return removed


def orphan_states(engine: Engine, known: set[str]) -> list[str]:
    runtime = Runtime(engine.config.oci_root, require_sealed=False)
    removed = []
    for state in runtime.list():
        if state["id"] not in known:
            with contextlib.suppress(ContainerRuntimeError, OSError):
                runtime.delete(state["id"], force=True)
                removed.append(state["id"])
    return removed


async def collect(engine: Engine) -> dict[str, Any]:
    known = _known(engine)
    report: dict[str, Any] = {
        "containers": await asyncio.to_thread(orphan_container_dirs, engine, known),
        "cgroups": await asyncio.to_thread(orphan_cgroups, engine, known),
        "states": await asyncio.to_thread(orphan_states, engine, known),
    }
    in_use = {r.image_id for r in engine.containers.all()}
    images_report = await asyncio.to_thread(engine.images.gc, keep_images=in_use)
    report["images"] = (
        vars(images_report) if hasattr(images_report, "__dict__") else str(images_report)
    )
    report["volumes"] = await asyncio.to_thread(engine.volumes.cleanup_orphans)
    logger.info("gc: %s", report)
    return report
