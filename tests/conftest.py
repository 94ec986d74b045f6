"""Shared test plumbing: where the real servers are, and what to do when one is missing."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

REQUIRE_SERVICES = os.environ.get("STATEKIT_REQUIRE_SERVICES") == "1"
_SUMMARY_LINES = pytest.StashKey[list[str]]()


def service_url(env_var: str) -> str:
    """The URL of a real server from ``env_var``.

    Without it the calling test is skipped, unless ``STATEKIT_REQUIRE_SERVICES=1`` (CI),
    where a missing server is a failure: CI must never pass by skipping real backends.
    """
    url = os.environ.get(env_var)
    if url:
        return url
    message = f"{env_var} is not set"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} and STATEKIT_REQUIRE_SERVICES=1", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real local 3-master Redis Cluster for this test session (free loopback ports).

    Started by ``backends/redis-cluster/start.sh``, which returns once every node reports
    ``cluster_state:ok``; stopped and its directory deleted after the session.
    """
    from redis_servers import start_cluster, stop_cluster

    directory = tmp_path_factory.mktemp("redis-cluster")
    url = start_cluster(directory)
    try:
        yield url
    finally:
        stop_cluster(directory)


@pytest.fixture
def summary_line(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Add a line to the ``statekit`` section of the run's terminal summary.

    Tests whose figures matter even when they pass (the soak's lost / phantom counts) use
    it, so the counts are in every CI log without ``-s``.
    """
    return request.config.stash.setdefault(_SUMMARY_LINES, []).append


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    lines = config.stash.get(_SUMMARY_LINES, [])
    if lines:
        terminalreporter.section("statekit")
        for line in lines:
            terminalreporter.write_line(line)
