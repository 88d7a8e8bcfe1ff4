"""What users type about volumes: volume names, sizes ("10m", "1.5g") and ``-v`` specs
("NAME:/path:ro", "/host:/path", "/path"), parsed the way Docker parses them."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from runtime.errors import InvalidArgument

logger = logging.getLogger(__name__)

# Docker's volume name rule; the length cap is the file system's, since a name is a directory.
NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
MAX_NAME_LENGTH = 255

# go-units' RAMInBytes: binary multiples, case-insensitive, an optional "b"/"ib" suffix and one
# optional space before the unit ("512k", "10MB", "1.5 GiB", "100").
_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?) ?([kmgtp])?(i?b)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}

_MODES = {"ro": True, "rw": False}

VolumeKind = Literal["named", "bind", "anonymous"]


@dataclass(frozen=True)
class VolumeSpec:
    """One parsed ``-v`` argument. ``source`` is a volume name (named), an absolute host
    path (bind) or "" (anonymous: the engine creates a volume with a random name), as in
    Docker's ``mount.Source``."""

    kind: VolumeKind
    source: str
    destination: str
    read_only: bool = False


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid volume name, else raise InvalidArgument."""
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidArgument("volume name", f"{name[:32]!r}... is longer than 255 characters")
    if not NAME_RE.fullmatch(name):
        raise InvalidArgument(
            "volume name",
            f"{name!r} includes invalid characters: use [a-zA-Z0-9][a-zA-Z0-9_.-]+",
        )
    return name


def parse_size(value: str) -> int:
    """``"10m"`` -> 10485760. Units k, m, g, t, p are powers of 1024, as in Docker."""
    match = _SIZE_RE.fullmatch(value)
    if match is None:
        raise InvalidArgument("size", f"{value!r} is not a size like 100, 512k, 10m or 1.5g")
    number, unit, _suffix = match.groups()
    # Decimal keeps "1.5g" exact where a float would round.
    return int(Decimal(number) * _UNITS[(unit or "").lower()])


def _clean_path(spec: str, path: str, what: str) -> str:
    """An absolute path with "." and empty components removed; ".." is refused."""
    if not path.startswith("/"):
        raise InvalidArgument(f"volume {spec!r}", f"{what} {path!r} is not an absolute path")
    if "\0" in path:
        raise InvalidArgument(f"volume {spec!r}", f"{what} contains a NUL byte")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"volume {spec!r}", f"{what} {path!r} contains '..'")
    return "/" + "/".join(parts)


def _parse_source(spec: str, source: str) -> tuple[VolumeKind, str]:
    if not source:
        raise InvalidArgument(f"volume {spec!r}", "empty source")
    if source.startswith("/"):
        return "bind", _clean_path(spec, source, "source")
    if not NAME_RE.fullmatch(source) or len(source) > MAX_NAME_LENGTH:
        raise InvalidArgument(
            f"volume {spec!r}",
            f"{source!r} is neither an absolute host path nor a valid volume name",
        )
    return "named", source


def parse_volume_spec(spec: str) -> VolumeSpec:
    """Parse ``NAME:/dst[:ro|rw]``, ``/host:/dst[:ro|rw]`` or ``/dst`` (anonymous)."""
    parts = spec.split(":")
    if len(parts) > 3 or not spec:
        raise InvalidArgument(f"volume {spec!r}", "use NAME:/path[:ro|rw], /host:/path or /path")
    mode = parts[2] if len(parts) == 3 else "rw"
    if mode not in _MODES:
        raise InvalidArgument(f"volume {spec!r}", f"invalid mode {mode!r}: use ro or rw")
    if len(parts) == 1:
        kind: VolumeKind = "anonymous"
        source = ""
    else:
        if parts[1] in _MODES and parts[0].startswith("/"):
            raise InvalidArgument(
                f"volume {spec!r}", "a mode needs a source: use NAME:/path:ro or /host:/path:ro"
            )
        kind, source = _parse_source(spec, parts[0])
    destination = _clean_path(spec, parts[-1] if len(parts) < 3 else parts[1], "destination")
    if destination == "/":
        raise InvalidArgument(f"volume {spec!r}", "destination can't be '/'")
    return VolumeSpec(kind, source, destination, _MODES[mode])
