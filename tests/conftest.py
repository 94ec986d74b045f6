"""Shared test plumbing: servers started for the session, and the run's summary lines.

Where the real servers are (``service_url``) and the backend matrix's pytest side live in
``services.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from redis_servers import RedisServer

pytest_plugins = ("pytester",)  # runs the shipped suite as a third party would
_SUMMARY_PROPERTY = "statekit summary"
_summary_lines: list[str] = []  # this process's, for its terminal summary

#: Modules whose tests load the machine on purpose, by the pytest-xdist group they run in
#: (``--dist loadgroup``): the tests of one group run on one worker, one after another.
#: Worker processes racing on one counter or killed mid-write; a minute of 128
#: concurrent callers, servers stopped under writers and storms of cancellations, whose
#: calls must each end in bounded time; benchmark runs, one at a time.
LOAD_GROUPS = {
    "test_attacks_increments.py": "processes",
    "test_attacks_sigkill.py": "processes",
    "test_soak.py": "load",
    "test_faults.py": "load",
    "test_cancellation_storm.py": "load",
    "test_benchmarks_smoke.py": "benchmarks",
}


@pytest.hookimpl(tryfirst=True)  # before xdist names each item's group from its marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        group = LOAD_GROUPS.get(item.path.name)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def session_schema() -> Iterator[str]:
    """A PostgreSQL schema of this session's own, dropped with everything in it at the end
    (skipped, or failed under ``STATEKIT_REQUIRE_SERVICES=1``, without a server)."""
    from sqlsupport import private_schema

    yield from private_schema()


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


@pytest.fixture(scope="session")
def redis_sentinel_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A primary, its replica and a Sentinel of this session's own (free loopback ports)."""
    from sentinel_servers import SentinelServers

    servers = SentinelServers(tmp_path_factory.mktemp("redis-sentinel"))
    try:
        servers.start()
        yield servers.url(db=0)
    finally:
        servers.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (no persistence) on a free loopback port, for
    tests that stop, slow or reconfigure their server, or count its commands; killed
    afterwards. Started again on another port if another process took the first."""
    from redis_servers import NO_PERSISTENCE, PortTakenError, RedisServer, free_port

    for attempt in range(3):
        directory = tmp_path / ("redis" if attempt == 0 else f"redis-{attempt}")
        server = RedisServer(directory, free_port(), *NO_PERSISTENCE)
        try:
            server.start()
            break
        except PortTakenError:
            if attempt == 2:
                raise
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def summary_line(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Add a line to the ``statekit`` section of the run's terminal summary.

    Tests whose figures matter even when they pass (the soak's lost / phantom counts) use
    it, so the counts are in every CI log without ``-s``. The line travels in the test's
    report (a user property), so it reaches the summary from a pytest-xdist worker too.
    """

    def add(line: str) -> None:
        request.node.user_properties.append((_SUMMARY_PROPERTY, line))

    return add


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep the summary lines of each test's call (in the process that prints the
    summary, its own tests' or the workers' reports)."""
    if report.when == "call":
        lines = [value for name, value in report.user_properties if name == _SUMMARY_PROPERTY]
        if lines:
            _summary_lines.extend(str(line) for line in lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _summary_lines:
        terminalreporter.section("statekit")
        for line in _summary_lines:
            terminalreporter.write_line(line)
