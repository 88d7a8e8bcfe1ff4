"""The progress of an image pull as the lab page shows it: each layer's latest phase and
bytes, in the order the layers appeared. A pull reports byte counts every 100 ms per layer;
the page is sent the whole picture at most every ``INTERVAL`` seconds, and at the end.

A snapshot (stored in Redis and sent to the page as a "pull" frame) is JSON:
``{"reference": "alpine:3", "layers": [{"id", "phase", "current", "total"}...],
"pulled": false, "note": ""}``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from playground.engine import PullStep

INTERVAL = 0.25


class PullReport:
    def __init__(self, reference: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.reference = reference
        self.layers: dict[str, dict[str, Any]] = {}
        self.pulled = False
        self.note = ""
        self._clock = clock
        self._sent = -math.inf

    def take(self, step: PullStep) -> bool:
        """Record one step; True when a snapshot is due (the first, every ``INTERVAL``
        seconds, and the last)."""
        if step.phase == "pulled":
            self.pulled = True
            return True
        self.layers[step.layer] = {
            "id": step.layer,
            "phase": step.phase,
            "current": step.current,
            "total": step.total,
        }
        now = self._clock()
        if now - self._sent < INTERVAL:
            return False
        self._sent = now
        return True

    def snapshot(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "layers": list(self.layers.values()),
            "pulled": self.pulled,
            "note": self.note,
        }
