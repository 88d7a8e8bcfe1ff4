"""How pulls and pushes look on a terminal: ``docker pull``'s per-layer lines with progress
bars, redrawn in place on a TTY; one line per phase change when the output is piped."""

from __future__ import annotations

import logging
from typing import TextIO

from runtime.registry.progress import PullEvent, PushEvent

logger = logging.getLogger(__name__)

BAR_WIDTH = 50
_UNITS = ("B", "kB", "MB", "GB", "TB")
PULL_LABELS = {
    "waiting": "Pulling fs layer",
    "downloading": "Downloading",
    "verifying": "Verifying Checksum",
    "extracting": "Extracting",
    "done": "Pull complete",
    "exists": "Already exists",
}
PUSH_LABELS = {
    "waiting": "Preparing",
    "pushing": "Pushing",
    "done": "Pushed",
    "exists": "Layer already exists",
}


def human_size(size: float) -> str:
    """go-units' HumanSize (decimal units, three significant digits), as Docker prints."""
    unit = 0
    while size >= 1000 and unit < len(_UNITS) - 1:
        size /= 1000
        unit += 1
    return f"{size:.3g}{_UNITS[unit]}"


def bar(current: int, total: int) -> str:
    """``[=====>     ]  1.2MB/3.4MB``."""
    if total <= 0:
        return ""
    filled = min(BAR_WIDTH, BAR_WIDTH * current // total)
    arrow = "=" * max(0, filled - 1) + (">" if filled else "")
    return f"[{arrow:<{BAR_WIDTH}}] {human_size(current):>8}/{human_size(total)}"


class LayerLines:
    """One line per layer id. On a TTY each id keeps its line, redrawn in place; piped,
    a line is printed when an id's label changes (never for byte counts)."""

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self._order: list[str] = []
        self._labels: dict[str, str] = {}

    def show(self, key: str, label: str, detail: str = "") -> None:
        if not self.tty:
            if self._labels.get(key) != label:
                self._labels[key] = label
                self.out.write(f"{key}: {label}\n")
                self.out.flush()
            return
        text = f"{key}: {label} {detail}".rstrip()
        if key not in self._labels:
            self._order.append(key)
            self._labels[key] = label
            self.out.write(text + "\n")
        else:
            self._labels[key] = label
            up = len(self._order) - self._order.index(key)
            self.out.write(f"\x1b[{up}A\r\x1b[2K{text}\r\x1b[{up}B")
        self.out.flush()

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


def show_pull_event(lines: LayerLines, event: PullEvent) -> None:
    label = PULL_LABELS.get(event.phase)
    if label is None:
        return
    detail = bar(event.current, event.total) if event.phase == "downloading" else ""
    if event.phase == "verifying" and not lines.tty:
        lines.show(event.id, "Verifying Checksum")
        lines.show(event.id, "Download complete")
        return
    lines.show(event.id, label, detail)


def show_push_event(lines: LayerLines, event: PushEvent) -> None:
    label = PUSH_LABELS.get(event.phase)
    if label is None:
        return
    detail = bar(event.current, event.total) if event.phase == "pushing" else ""
    lines.show(event.id, label, detail)
