"""Telling a lab's or an instance's terminals: the channel groups they listen on, the key
a terminal of this process waits on for its container, and the notices sent to them.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def lab_group(lab_id: uuid.UUID | str) -> str:
    return f"lab-{lab_id}"


def instance_group(instance_id: int) -> str:
    return f"instance-{instance_id}"


def instance_ready_key(instance_id: int) -> str:
    """What a terminal of this process ``background.expect``s: the container's id."""
    return f"instance-ready-{instance_id}"


async def _tell(group: str, message: dict[str, Any]) -> None:
    """Tell the terminals of a lab or instance; they end their own connections. A missed
    notice is healed anyway: attach streams end, and waiting terminals ask again."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(group, message)
    except Exception:
        logger.warning("could not notify %s of %s", group, message.get("type"), exc_info=True)


def _notify(group: str, message: dict[str, Any]) -> None:
    async_to_sync(_tell)(group, message)
