"""Starting, driving and reaping the worker processes of ``attack_workers.py``.

Every wait is bounded: when a worker does not answer in time, every worker of the group
is killed and the test fails with what they printed, so a hang never outlives its test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

WORKER = Path(__file__).with_name("attack_workers.py")


@dataclass
class Worker:
    """One worker process and the lines it has printed so far."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)

    async def read_line(self) -> str:
        """The next line, or ``""`` once the worker has exited."""
        assert self.process.stdout is not None
        line = (await self.process.stdout.readline()).decode().strip()
        if line:
            self.lines.append(line)
        return line

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")

    def kill(self) -> None:
        """SIGKILL, unless it has already exited (once reaped, its pid may be reused)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


async def spawn(mode: str, count: int) -> list[Worker]:
    """``count`` workers of ``mode``, idle until given a job."""
    workers = []
    for _ in range(count):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            mode,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        workers.append(Worker(process))
    return workers


async def _lines(workers: list[Worker], bound: float, what: str) -> list[str]:
    """One line from each worker within ``bound`` seconds; else all are killed."""
    try:
        return await asyncio.wait_for(asyncio.gather(*(w.read_line() for w in workers)), bound)
    except asyncio.TimeoutError:
        await kill_all(workers)
        pytest.fail(f"workers did not {what} within {bound} s: {[w.lines[-3:] for w in workers]}")


async def open_job(workers: list[Worker], configs: list[dict[str, Any]], bound: float) -> None:
    """Give each worker its job and wait (at most ``bound`` s) until all are ready."""
    for worker, config in zip(workers, configs, strict=True):
        worker.send(json.dumps(config))
    ready = await _lines(workers, bound, "get ready")
    if ready != ["ready"] * len(workers):
        await kill_all(workers)
        pytest.fail(f"workers failed to get ready: {ready}")


def release(workers: list[Worker]) -> None:
    """Let every ready worker start its job at once."""
    for worker in workers:
        worker.send("go")


async def results(workers: list[Worker], bound: float) -> list[str]:
    """Each worker's result line, within ``bound`` seconds."""
    return await _lines(workers, bound, "finish")


async def kill_all(workers: list[Worker]) -> None:
    """SIGKILL every worker and reap it."""
    for worker in workers:
        worker.kill()
    for worker in workers:
        await worker.process.wait()


async def stop(workers: list[Worker], bound: float = 10.0) -> None:
    """Close the workers' stdin (they exit when idle) and reap them; kill any that stay."""
    for worker in workers:
        assert worker.process.stdin is not None
        worker.process.stdin.close()
    try:
        await asyncio.wait_for(asyncio.gather(*(w.process.wait() for w in workers)), bound)
    except asyncio.TimeoutError:
        await kill_all(workers)


def deadline(seconds: float) -> float:
    """The wall-clock time (the same in every process) a job must be done by."""
    return time.time() + seconds
