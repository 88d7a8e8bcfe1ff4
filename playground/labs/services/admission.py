"""Admission: whether one more instance may start now (the host's capacity and its queue
of waiting starts), and the rate limit of anonymous starts.
"""

from __future__ import annotations

from django.conf import settings

from playground import live
from playground.errors import AtCapacity, LimitReached
from playground.labs import selectors
from playground.labs.policy import Owner

RATE_WINDOW = 3600


def _admit(*, ticket: str | None) -> None:
    """Let one more instance start, or raise ``AtCapacity`` with the place in the queue.

    Without a ticket, a start is admitted only if nobody is waiting. With one, the first
    ``free`` tickets of the queue are admitted. Two starts at the same moment may both take
    the last slot: the capacity is a soft limit.
    """
    state = live.state()
    free = settings.CAPACITY - selectors.instances_running_count()
    if ticket is None:
        if free >= 1 and state.queue_length() == 0:
            return
        raise AtCapacity(position=None)
    position = state.queue_position(ticket)
    if position is None:
        state.queue_join(ticket)
        position = state.queue_position(ticket) or 1
    if free >= 1 and position <= free:
        state.queue_leave(ticket)
        return
    raise AtCapacity(position=position)


def _check_rate(*, owner: Owner, client_address: str) -> None:
    if not owner.is_anonymous:
        return
    hits = live.state().rate_hit("anon-start", client_address, RATE_WINDOW)
    if hits > settings.ANON_STARTS_PER_HOUR:
        raise LimitReached(
            "Too many labs were started from your address in the last hour. "
            "Sign up to start more, or try again later.",
            f"rate limit: {hits} anonymous starts from {client_address}",
        )
