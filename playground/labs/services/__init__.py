"""Writes: starting, extending and ending labs; adding, restarting and removing instances;
pulling their images; expiring labs and rebuilding the live state. Engine calls go through
``playground.engine``.

The database row of an instance is committed before its container is launched, so that
reconciliation can always tell the site's containers from orphans. An instance whose image
is on the host is launched straight away (by a view: concurrently, on the server's loop, so
the page loads while the engine works); one whose image is not is "pulling" until the
``instance_pull`` Celery task has pulled it, reporting progress through Redis and the
channel layer, and launched it. Either way the instance's terminals are told when it is
ready ("instance.ready") or why it failed ("instance.failed"), and the reason is kept on the
instance for the page.

``labs`` starts and extends labs, ``ending`` ends them, ``instances`` adds, restarts and
removes instances, ``launch`` launches their containers, ``pulling`` pulls their images,
``admission`` lets starts in, ``reconcile`` rebuilds the live state, and ``notify`` tells
the terminals.
"""

from __future__ import annotations

from playground.labs.services.admission import RATE_WINDOW
from playground.labs.services.ending import lab_end, lab_teardown, labs_expire_due
from playground.labs.services.instances import instance_add, instance_remove, instance_restart
from playground.labs.services.labs import lab_extend, lab_start, labs_claim
from playground.labs.services.launch import (
    _instance_launch_soon as _instance_launch_soon,  # tests call it
)
from playground.labs.services.launch import (
    _instance_spec as _instance_spec,  # tests call it
)
from playground.labs.services.launch import instance_launch, instance_resources
from playground.labs.services.notify import instance_group, instance_ready_key, lab_group
from playground.labs.services.pulling import instance_pull, instance_pull_abandon
from playground.labs.services.reconcile import PULLING_GRACE, STARTING_GRACE, live_state_rebuild

__all__ = [
    "PULLING_GRACE",
    "RATE_WINDOW",
    "STARTING_GRACE",
    "instance_add",
    "instance_group",
    "instance_launch",
    "instance_pull",
    "instance_pull_abandon",
    "instance_ready_key",
    "instance_remove",
    "instance_resources",
    "instance_restart",
    "lab_end",
    "lab_extend",
    "lab_group",
    "lab_start",
    "lab_teardown",
    "labs_claim",
    "labs_expire_due",
    "live_state_rebuild",
]
