"""OCI hooks: each gets the container's state JSON on stdin and must exit 0 in time."""

from __future__ import annotations

import logging
import subprocess
from typing import Any

from runtime.errors import HookError

logger = logging.getLogger(__name__)

HOOK_KINDS = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)


def run_hooks(config: dict[str, Any], kind: str, state_json: str, *, strict: bool = True) -> None:
    """Run every hook of ``kind``; with ``strict`` the first failure raises HookError,
    otherwise (poststart, poststop) failures are logged and the rest still run."""
    for hook in (config.get("hooks") or {}).get(kind) or []:
        try:
            run_hook(kind, hook, state_json)
        except HookError:
            if strict:
                raise
            logger.warning("%s hook %s failed", kind, hook.get("path"), exc_info=True)


def run_hook(kind: str, hook: dict[str, Any], state_json: str) -> None:
    path = hook["path"]
    args = hook.get("args") or [path]
    env = dict(item.split("=", 1) for item in hook.get("env") or [])
    timeout = hook.get("timeout")
    try:
        result = subprocess.run(
            args,
            executable=path,
            input=state_json.encode(),
            env=env,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise HookError(kind, path, f"timed out after {timeout} s") from None
    except OSError as exc:
        raise HookError(kind, path, exc.strerror or str(exc)) from exc
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip()[-500:]
        raise HookError(kind, path, f"exited with status {result.returncode}: {detail}")
