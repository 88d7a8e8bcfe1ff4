"""How Docker shows things to people: durations ("2 minutes ago"), sizes ("4.26MB",
"1.898MiB"), container statuses ("Up 3 seconds", "Exited (0) 5 seconds ago"), quoted and
truncated commands, Go-style timestamps, and tables aligned like Go's tabwriter."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
# tabwriter.NewWriter(out, 10, 1, 3, ' ', 0), as docker's formatter sets it up.
_MIN_WIDTH = 10
_PADDING = 3
_FRACTION = re.compile(r"(\.\d{6})\d+")


def human_duration(seconds: float) -> str:
    """go-units' HumanDuration, which ``docker ps`` uses for CREATED and STATUS."""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = whole // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def parse_time(value: Any) -> float | None:
    """Epoch seconds from an RFC 3339 string (any fraction length) or a number; None if
    empty or unparsable."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if value > 0 else None
    if not isinstance(value, str) or not value:
        return None
    text = _FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def ago(value: Any, now: float | None = None) -> str:
    stamp = parse_time(value)
    if stamp is None:
        return "N/A"
    return f"{human_duration((time.time() if now is None else now) - stamp)} ago"


def container_status(state: dict[str, Any], now: float | None = None) -> str:
    """STATUS of ``docker ps``, from an inspect's ``State``."""
    now = time.time() if now is None else now
    status = state.get("Status")
    if status == "running":
        started = parse_time(state.get("StartedAt"))
        return f"Up {human_duration(now - started)}" if started else "Up"
    if status == "exited":
        code = state.get("ExitCode", 0)
        finished = parse_time(state.get("FinishedAt"))
        if finished is None:
            return f"Exited ({code})"
        return f"Exited ({code}) {human_duration(now - finished)} ago"
    if status == "removing":
        return "Removal In Progress"
    return "Created"


def go_time(value: Any) -> str:
    """Go's ``time.Time.String()`` in local time, as ``--format json`` shows CreatedAt."""
    stamp = parse_time(value)
    if stamp is None:
        return ""
    local = datetime.fromtimestamp(int(stamp)).astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S %z %Z")


def human_size(size: float, precision: int = 3) -> str:
    """go-units' HumanSizeWithPrecision (decimal units), as ``docker images`` shows SIZE."""
    unit = 0
    while size >= 1000 and unit < len(_DECIMAL_UNITS) - 1:
        size /= 1000
        unit += 1
    return f"{size:.{precision}g}{_DECIMAL_UNITS[unit]}"


def bytes_size(size: float) -> str:
    """go-units' BytesSize (binary units), as ``docker stats`` shows memory."""
    unit = 0
    while size >= 1024 and unit < len(_BINARY_UNITS) - 1:
        size /= 1024
        unit += 1
    return f"{size:.4g}{_BINARY_UNITS[unit]}"


def ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def quote(text: str) -> str:
    """Go's ``strconv.Quote`` for printable text: double quotes, backslash escapes."""
    return json.dumps(text, ensure_ascii=False)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns aligned as Go's tabwriter does it for docker: padding 3, minimum width 10;
    the last column is not padded."""
    lines = [list(headers), *(list(row) for row in rows)]
    widths = [
        max(_MIN_WIDTH, max(len(line[col]) for line in lines) + _PADDING)
        for col in range(len(headers) - 1)
    ]
    out = []
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        out.append("".join(cells) + line[-1])
    return "\n".join(out)


def json_line(data: dict[str, Any]) -> str:
    """One object per line with sorted keys, like docker's ``--format '{{json .}}'``."""
    return json.dumps(data, sort_keys=True, ensure_ascii=False)
