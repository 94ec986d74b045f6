"""Expiry on Redis: a scope's deadline is its keys' expire time, kept by Redis itself.

The scripts (:mod:`~statekit.backends.redis.scripts`) set the deadline on all four keys
of a scope with ``PEXPIREAT`` (a write with a ttl) or move an existing one (a refresh on
read, ``PEXPIREAT ... XX``), taking "now" from the server's ``TIME``. Redis drops an
expired key the first time anything touches it, and samples the rest in the background,
so an expired scope is absent at once and its memory comes back without a sweep.

Here: how a ttl travels to a script, and how an expire time reads back as a deadline.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

from statekit.backends.base import NEVER

__all__ = ["MAX_TTL_SECONDS", "deadline", "ttl_argument"]

#: The longest ttl kept as given (about 317 years); a longer one is taken as this, so that
#: the deadline is a ``datetime`` and now + ttl stays exact in the scripts' arithmetic.
MAX_TTL_SECONDS = 1e10
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_LATEST = datetime.max.replace(tzinfo=timezone.utc)
_LATEST_MS = (_LATEST - _EPOCH) // timedelta(milliseconds=1)


def ttl_argument(ttl: float) -> str:
    """``ttl`` (seconds) as the scripts take it: whole milliseconds (at least 1), or
    ``"never"`` for :data:`~statekit.backends.base.NEVER`.

    Checked before anything is sent: a script that failed half-way would leave its
    write applied without its deadline (Redis scripts do not roll back).
    """
    if ttl == NEVER:
        return "never"
    if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not ttl > 0:
        raise ValueError(f"ttl must be a positive number of seconds or NEVER, not {ttl!r}")
    return str(max(1, math.ceil(min(ttl, MAX_TTL_SECONDS) * 1000 - 1e-6)))


def deadline(expire_time: int) -> datetime | None:
    """The deadline of a scope whose value hash has ``expire_time`` (``PEXPIRETIME``:
    ms since the epoch, -1 without one, -2 when absent): the first millisecond the
    scope is absent, one after the last one Redis keeps the key. An expire time past
    what a ``datetime`` holds (set by hand: statekit never sets one) reads as the latest."""
    if expire_time < 0:
        return None
    if expire_time >= _LATEST_MS:
        return _LATEST
    return _EPOCH + timedelta(milliseconds=expire_time + 1)
