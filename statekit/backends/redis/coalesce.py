"""Single writes that go out side by side, sent as one script call.

Under load the auto-pipeline (:mod:`~statekit.backends.redis.pipeline`) sends the calls
of many concurrent callers in one round trip, most of them writes of one entry each
(``EVALSHA`` of :data:`~statekit.backends.redis.scripts.WRITE_ONE_SHA`). A script call
costs the server a fixed part (the call itself, its ``TIME``) besides its writes, and
the client one reply to parse; :func:`coalescing` wraps a :data:`Send` so that each run
of adjacent single writes goes out as one call of the script that runs each of them in
turn (:data:`~statekit.backends.redis.scripts.WRITE_EACH_SHA`), and hands each command
its own reply back. That call names each write's value hash only (its scope's other
keys are named after it) and each distinct context once: most of a single write's
bytes are its four keys and its context, the same for the writes of one runner.

What each caller sees is unchanged: its write runs as it would alone, in call order
between the commands around it (only adjacent writes are joined, so nothing overtakes
anything), with its own reply, an error reply included. What the batch shares it
shared already: a lost connection or a timeout fails the round trip, every call in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from statekit.backends.redis.connections import Command, Send
from statekit.backends.redis.scripts import (
    WRITE_EACH_SHA,
    WRITE_EACH_TTL_SHA,
    WRITE_ONE_SHA,
    WRITE_ONE_TTL_SHA,
)

__all__ = ["MAX_JOINED", "coalescing", "join"]

#: The script of each single write, and the one that runs several of them in one call.
_JOINED = {WRITE_ONE_SHA: WRITE_EACH_SHA, WRITE_ONE_TTL_SHA: WRITE_EACH_TTL_SHA}
#: The most writes joined in one call: a script blocks the server while it runs, so a
#: call stays short (about a millisecond of server time).
MAX_JOINED = 128


def _joinable(command: Command) -> str | None:
    """The script a single write ``command`` joins others in, else ``None``."""
    if command[0] != "EVALSHA":
        return None
    return _JOINED.get(command[1])


def join(commands: Sequence[Command]) -> tuple[list[Command], list[int]]:
    """The commands to send, and for each how many of ``commands`` it stands for: a run
    of adjacent single writes of one script (up to :data:`MAX_JOINED`) becomes one call
    (:func:`_joined`); any other command is kept."""
    sent: list[Command] = []
    counts: list[int] = []
    i, total = 0, len(commands)
    while i < total:
        script = _joinable(commands[i])
        end = i + 1
        if script is not None:
            first = commands[i][1]
            while (
                end < total
                and end - i < MAX_JOINED
                and commands[end][0] == "EVALSHA"
                and commands[end][1] == first
            ):
                end += 1
        sent.append(commands[i] if end - i == 1 else _joined(script, commands[i:end]))
        counts.append(end - i)
        i = end
    return sent, counts


def _joined(script: Any, writes: Sequence[Command]) -> Command:
    """The call of ``script`` for single ``writes`` (each with 4 keys, then its field,
    value, context and expected version, and with expiry its ttl): each write's value
    hash, then each write's arguments with its context replaced by the position in ARGV
    of that context, then each distinct context once (see the scripts)."""
    keys: list[Any] = []
    args: list[Any] = []
    contexts: dict[Any, int] = {}
    first = len(writes) * (len(writes[0]) - 7) + 1  # ARGV position of the first context
    for write in writes:
        keys.append(write[3])
        context = write[9]
        position = contexts.get(context)
        if position is None:
            position = contexts[context] = first + len(contexts)
        args += (write[7], write[8], position, *write[10:])
    return ("EVALSHA", script, len(keys), *keys, *args, *contexts)


def _split(replies: list[Any], counts: list[int]) -> list[Any]:
    """The reply of each command given to :func:`join`: a joined call's list of replies
    spread over its writes; an error reply of the call itself (the script unknown, the
    server out of memory) given to each of them."""
    out: list[Any] = []
    for reply, count in zip(replies, counts, strict=True):
        if count == 1:
            out.append(reply)
        elif isinstance(reply, Exception):
            out += [reply] * count
        else:
            out += reply
    return out


def coalescing(send: Send) -> Send:
    """``send``, with each run of adjacent single writes sent as one script call."""

    async def send_joined(commands: Sequence[Command]) -> list[Any]:
        if len(commands) < 2:
            return await send(commands)
        sent, counts = join(commands)
        if len(sent) == len(commands):
            return await send(commands)
        return _split(await send(sent), counts)

    return send_joined
