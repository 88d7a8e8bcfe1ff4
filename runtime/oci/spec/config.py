"""Reading and validating a bundle's config.json as a whole: the top-level fields, hooks and
annotations here, each other section in its own module.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from runtime.errors import InvalidSpec
from runtime.oci.spec.checks import (
    UNKNOWN_WARNINGS,
    absolute_path,
    boolean,
    environment,
    fail,
    integer,
    list_of,
    obj,
    string_map,
    strings,
    text,
    unsupported,
)
from runtime.oci.spec.linux import (
    LINUX,
    check_namespace_rules,
    check_sysctls,
    linux_warnings,
    namespace_paths,
)
from runtime.oci.spec.mounts import MOUNTS
from runtime.oci.spec.process import PROCESS, process_warnings

logger = logging.getLogger(__name__)

HOOK_NAMES = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)
_HOOK = obj(
    {
        "path": absolute_path,
        "args": strings,
        "env": environment,
        "timeout": integer(1, 2**31 - 1),
    },
    required=("path",),
)


def _oci_version(value: Any, path: str) -> None:
    text(value, path)
    if not value.startswith("1."):
        fail(path, f"version {value!r} is not 1.x")


def _hostname(value: Any, path: str) -> None:
    text(value, path)
    if len(value.encode()) > 64:
        fail(path, "is longer than 64 bytes")


_CONFIG = obj(
    {
        "ociVersion": _oci_version,
        "process": PROCESS,
        "root": obj({"path": text, "readonly": boolean}, required=("path",)),
        "hostname": _hostname,
        "domainname": _hostname,
        "mounts": MOUNTS,
        "hooks": obj({name: list_of(_HOOK) for name in HOOK_NAMES}),
        "annotations": string_map,
        "linux": LINUX,
        "solaris": unsupported(),
        "windows": unsupported(),
        "vm": unsupported(),
        "zos": unsupported(),
    },
    required=("ociVersion", "root", "process"),
)


def validate(config: dict[str, Any]) -> list[str]:
    """Check ``config`` against what playground can run. Raises ``InvalidSpec`` naming the
    first bad field; returns warnings about settings that are accepted but ignored."""
    if type(config) is not dict:
        fail("config.json", "must be a JSON object")
    unknown: list[str] = []
    token = UNKNOWN_WARNINGS.set(unknown)
    try:
        _CONFIG(config, "")
    finally:
        UNKNOWN_WARNINGS.reset(token)
    if not config["root"]["path"]:
        fail("root.path", "must not be empty")
    linux = config.get("linux") or {}
    namespaces = namespace_paths(linux)
    check_namespace_rules(config, namespaces)
    check_sysctls(linux, namespaces)
    return unknown + process_warnings(config["process"]) + linux_warnings(linux)


def validate_process(process: dict[str, Any]) -> list[str]:
    """Check a process object on its own, as ``exec --process`` passes one."""
    PROCESS(process, "process")
    return process_warnings(process)


def load(bundle: str) -> dict[str, Any]:
    """Read and validate ``<bundle>/config.json``; warnings only go to the debug log."""
    config = read(bundle)
    for warning in validate(config):
        logger.debug("bundle %s: %s", bundle, warning)
    return config


def read(bundle: str) -> dict[str, Any]:
    """Read ``<bundle>/config.json`` without validating it (the caller validates once and
    reports the warnings, naming the container)."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            config = json.load(f)
    except OSError as exc:
        raise InvalidSpec("config.json", f"cannot read {path}: {exc.strerror}") from exc
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON; absurd nesting
        raise InvalidSpec("config.json", f"{path} is not valid JSON: {exc}") from exc
    return config  # type: ignore[no-any-return]
