"""Which containers use an image or a volume, read straight from the container records
(``<root>/containers/<id>/container.json``), so that ``rmi`` and ``volume rm`` need no daemon.
The daemon writes records atomically; one that cannot be read is skipped."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

RECORD = "container.json"


def load_records(containers_dir: str) -> list[dict[str, Any]]:
    try:
        names = sorted(os.listdir(containers_dir))
    except FileNotFoundError:
        return []
    records = []
    for name in names:
        with contextlib.suppress(OSError, ValueError):
            with open(os.path.join(containers_dir, name, RECORD)) as f:
                data = json.load(f)
            if isinstance(data, dict):
                records.append(data)
    return records


def image_user(records: list[dict[str, Any]], image_id: str) -> str | None:
    """The id of a container created from ``image_id``, if any."""
    for record in records:
        if record.get("image_id") == image_id:
            return str(record.get("id", ""))
    return None


def volume_user(records: list[dict[str, Any]], name: str, mountpoint: str) -> str | None:
    """The id of a container that mounts volume ``name``: by its mount source (which covers
    anonymous volumes) or by a ``-v NAME:/path`` option (which covers a container whose
    mounts are not prepared yet)."""
    for record in records:
        sources = {str(m.get("source")) for m in record.get("mounts") or [] if isinstance(m, dict)}
        options = record.get("options") or {}
        named = {str(v).split(":", 1)[0] for v in options.get("volumes") or [] if ":" in str(v)}
        if mountpoint in sources or name in named:
            return str(record.get("id", ""))
    return None
