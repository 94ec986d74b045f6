"""The server scripts under backends/, run for real on free loopback ports.

A script prints a URL only for a server it started and verified, fails loudly (non-zero,
the reason on stderr, nothing on stdout) otherwise, and stops only what it started: a
"foreign" server holding one of its ports is never stopped. Every server a test starts is
killed by pid in teardown, whatever the scripts did.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis_servers import NO_PERSISTENCE, distinct_ports, free_port, ping, redis_cli
from services import REQUIRE_SERVICES

BACKENDS = Path(__file__).resolve().parent.parent / "backends"
REDIS = BACKENDS / "redis"
CLUSTER = BACKENDS / "redis-cluster"
POSTGRES = BACKENDS / "postgres"

# Skipped only where servers are optional: under STATEKIT_REQUIRE_SERVICES=1 (CI) a
# missing binary fails these tests instead.
pytestmark = pytest.mark.skipif(
    not REQUIRE_SERVICES
    and (shutil.which("redis-server") is None or shutil.which("redis-cli") is None),
    reason="redis-server and redis-cli are needed",
)


def run(script: Path, *args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a script with none of its STATEKIT_* defaults set (so the test's arguments rule)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATEKIT_")}
    if cwd is not None:
        env["TMPDIR"] = str(cwd)  # where mktemp -t puts a default directory
    return subprocess.run(
        ["bash", str(script), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def running(pid: int) -> bool:
    """The process exists and has not exited (an unreaped zombie has exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pid_in(pidfile: Path) -> int:
    return int(pidfile.read_text().split()[0])


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def claim(port: int, under: Path, pids: list[int]) -> None:
    """Add to ``pids`` the redis-server on ``port`` if it works under ``under``: one a
    script started (rightly or not), for teardown to kill whatever the script did."""
    for line in redis_cli(port, "info", "server").splitlines():
        if line.startswith("process_id:"):
            pid = int(line.split(":")[1])
            with contextlib.suppress(OSError):
                if Path(os.readlink(f"/proc/{pid}/cwd")).is_relative_to(under.resolve()):
                    pids.append(pid)


@pytest.fixture
def started() -> Iterator[list[int]]:
    """Pids of servers the scripts started: SIGKILLed in teardown if still running."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(OSError):  # it exited meanwhile
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if running(pid) else b""
            if b"redis-server" in cmdline or b"postgres" in cmdline:
                os.kill(pid, signal.SIGKILL)


@dataclass
class Foreign:
    """A plain redis-server the scripts did not start, holding a port they are given."""

    port: int
    process: subprocess.Popen[bytes]

    def alive(self) -> bool:
        return self.process.poll() is None and ping(self.port)


@pytest.fixture
def foreign(tmp_path: Path) -> Iterator[Foreign]:
    port = free_port(bus_offset=10000)
    workdir = tmp_path / "foreign"
    workdir.mkdir()
    process = subprocess.Popen(
        [
            "redis-server",
            *("--port", str(port), "--bind", "127.0.0.1"),
            *NO_PERSISTENCE,
            "--daemonize",
            "no",
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not ping(port):
            assert process.poll() is None, "the foreign redis-server exited"
            assert time.monotonic() < deadline, "the foreign redis-server did not answer"
            time.sleep(0.02)
        yield Foreign(port, process)
    finally:
        process.kill()
        process.wait(timeout=10)


# -- backends/redis ------------------------------------------------------------------------


def test_redis_start_prints_the_url_of_its_own_aof_server_and_stop_stops_it(
    tmp_path: Path, started: list[int]
) -> None:
    port, data = free_port(), tmp_path / "data"
    result = run(REDIS / "start.sh", "--dir", data, port)
    claim(port, tmp_path, started)
    assert result.returncode == 0, result.stderr
    pid = pid_in(data / "redis.pid")
    assert result.stdout == f"redis://127.0.0.1:{port}/0\n"
    assert f"process_id:{pid}" in redis_cli(port, "info", "server")
    assert redis_cli(port, "config", "get", "appendonly").split() == ["appendonly", "yes"]

    again = run(REDIS / "start.sh", "--dir", data, port)
    assert (again.returncode, again.stdout) == (0, result.stdout)
    assert pid_in(data / "redis.pid") == pid  # the same server, not a second one

    stopped = run(REDIS / "stop.sh", "--dir", data)
    assert stopped.returncode == 0, stopped.stderr
    assert not running(pid)
    assert not ping(port)


def test_redis_start_on_a_taken_port_fails_and_leaves_that_server_alone(
    tmp_path: Path, foreign: Foreign, started: list[int]
) -> None:
    data = tmp_path / "data"
    result = run(REDIS / "start.sh", foreign.port, data)  # the PORT DIR form
    claim(foreign.port, tmp_path / "data", started)
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"port {foreign.port}: another process already listens" in result.stderr
    assert "Address already in use" in result.stderr  # the log's last lines
    assert foreign.alive()

    stopped = run(REDIS / "stop.sh", "--dir", data)
    assert stopped.returncode == 0, stopped.stderr
    assert foreign.alive()


def test_redis_stop_leaves_alone_a_pid_file_naming_another_server(
    tmp_path: Path, foreign: Foreign
) -> None:
    """A stale pid file whose pid is now another redis-server on the same port."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "redis.pid").write_text(f"{foreign.process.pid}\n")
    (data / "redis.port").write_text(f"{foreign.port}\n")
    result = run(REDIS / "stop.sh", data)
    assert foreign.alive()
    assert result.returncode == 0, result.stderr
    assert "left it alone" in result.stderr


@pytest.mark.parametrize(
    "args",
    [["notaport"], ["{port}", "{other}"], ["--bogus"], ["{port}", "dir", "extra"], ["--port"]],
    ids=["not-a-port", "second-port-as-dir", "unknown-option", "too-many", "missing-value"],
)
def test_redis_start_refuses_what_it_cannot_parse(
    tmp_path: Path, args: list[str], started: list[int]
) -> None:
    port, other = free_port(), free_port()
    args = [a.format(port=port, other=other) for a in args]
    result = run(REDIS / "start.sh", *args, cwd=tmp_path)
    claim(port, tmp_path, started)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "usage: start.sh" in result.stderr
    assert not listening(port)
    assert not (tmp_path / str(other)).exists()
    assert not (tmp_path / "redis-data").exists()


@pytest.mark.parametrize(
    ("script", "default"),
    [
        (REDIS / "start.sh", "6380"),
        (CLUSTER / "start.sh", "7000 7001 7002"),
        (POSTGRES / "start.sh", "55432"),
    ],
    ids=["redis", "cluster", "postgres"],
)
def test_usage_names_the_default_ports(script: Path, default: str) -> None:
    result = run(script, "--help")
    assert result.returncode == 0
    assert "usage:" in result.stdout
    assert default in result.stdout


# -- backends/redis-cluster ----------------------------------------------------------------


@pytest.mark.slow
def test_cluster_takes_ports_without_a_directory_and_stop_stops_every_node(
    tmp_path: Path, started: list[int]
) -> None:
    ports = distinct_ports(3, bus_offset=10000)
    result = run(CLUSTER / "start.sh", *ports, cwd=tmp_path)
    for port in ports:
        claim(port, tmp_path, started)
    (directory,) = tmp_path.glob("statekit-cluster.*")  # a new temporary directory
    assert result.returncode == 0, result.stderr
    assert len(started) == 3
    assert result.stdout == "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports) + "\n"
    assert not (tmp_path / str(ports[0])).exists()  # the first port is not a directory
    for port in ports:
        assert "cluster_state:ok" in redis_cli(port, "cluster", "info")

    stopped = run(CLUSTER / "stop.sh", "--dir", directory, "--delete")
    assert stopped.returncode == 0, stopped.stderr
    assert not any(running(pid) for pid in started)
    assert not any(ping(port) for port in ports)
    assert not directory.exists()


@pytest.mark.slow
def test_cluster_start_with_a_taken_port_fails_and_stop_leaves_that_server_alone(
    tmp_path: Path, foreign: Foreign, started: list[int]
) -> None:
    first, last = distinct_ports(2, bus_offset=10000)
    directory = tmp_path / "cluster"
    result = run(CLUSTER / "start.sh", directory, first, foreign.port, last)  # DIR PORT...
    for port in (first, last):
        claim(port, directory, started)
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"port {foreign.port}: another process already listens" in result.stderr
    assert not ping(first)  # the node it had started is stopped again
    assert not ping(last)
    assert foreign.alive()

    stopped = run(CLUSTER / "stop.sh", "--dir", directory, "--delete")
    assert stopped.returncode == 0, stopped.stderr
    assert foreign.alive()
    assert not directory.exists()


def test_cluster_stop_leaves_alone_a_pid_file_naming_another_server(
    tmp_path: Path, foreign: Foreign
) -> None:
    """The old stop.sh sent SHUTDOWN NOSAVE to every recorded port, whoever served it."""
    node = tmp_path / "cluster" / str(foreign.port)
    node.mkdir(parents=True)
    (node.parent / "ports").write_text(f"{foreign.port}\n")
    (node / "redis.pid").write_text(f"{foreign.process.pid}\n")
    result = run(CLUSTER / "stop.sh", node.parent)
    assert foreign.alive()
    assert result.returncode == 0, result.stderr
    assert "left it alone" in result.stderr


@pytest.mark.parametrize(
    "args",
    [["{a}", "{b}"], ["{a}", "x", "{b}", "{c}"], ["--dir"], ["--bogus"], ["{a}", "{a}", "{b}"]],
    ids=["two-ports", "word-among-ports", "missing-dir", "unknown-option", "repeated-port"],
)
def test_cluster_start_refuses_what_it_cannot_parse(
    tmp_path: Path, args: list[str], started: list[int]
) -> None:
    a, b, c = distinct_ports(3, bus_offset=10000)
    result = run(CLUSTER / "start.sh", *(x.format(a=a, b=b, c=c) for x in args), cwd=tmp_path)
    for port in (a, b, c):
        claim(port, tmp_path, started)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "usage: start.sh" in result.stderr
    assert not any(listening(port) for port in (a, b, c))
    assert list(tmp_path.iterdir()) == []


# -- backends/postgres ---------------------------------------------------------------------

needs_postgres = pytest.mark.skipif(
    not REQUIRE_SERVICES
    and shutil.which("initdb") is None
    and not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
    reason="PostgreSQL's initdb is needed",
)


@pytest.fixture
def pg_dirs() -> Iterator[list[Path]]:
    """Directories under /tmp (the postgres user must reach them when we run as root)."""
    dirs: list[Path] = []
    yield dirs
    for directory in dirs:
        if (directory / "data" / "postmaster.pid").exists():
            run(POSTGRES / "stop.sh", "--dir", directory)
            if (directory / "data" / "postmaster.pid").exists():
                os.kill(pid_in(directory / "data" / "postmaster.pid"), signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)


def pg_dir(dirs: list[Path]) -> Path:
    dirs.append(Path(tempfile.mkdtemp(prefix="statekit-pg-test.")))
    return dirs[-1]


def psql(port: int, sql: str) -> str:
    psql_bin = shutil.which("psql") or "psql"
    result = subprocess.run(
        [
            psql_bin,
            *("-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "statekit"),
            "-XAtc",
            sql,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return result.stdout.strip()


@needs_postgres
@pytest.mark.slow
def test_postgres_start_prints_the_url_of_its_own_server_and_stop_stops_it(
    pg_dirs: list[Path],
) -> None:
    port, directory = free_port(), pg_dir(pg_dirs)
    result = run(POSTGRES / "start.sh", "--dir", directory, port)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"postgresql+asyncpg://postgres@127.0.0.1:{port}/statekit\n"
    assert psql(port, "SHOW data_directory") == str(directory.resolve() / "data")
    assert psql(port, "SELECT to_regclass('statekit_state')") == "statekit_state"
    pid = pid_in(directory / "data" / "postmaster.pid")

    stopped = run(POSTGRES / "stop.sh", "--dir", directory)
    assert stopped.returncode == 0, stopped.stderr
    assert not running(pid)
    assert not listening(port)


@needs_postgres
@pytest.mark.slow
def test_postgres_start_on_a_taken_port_fails(pg_dirs: list[Path]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run(POSTGRES / "start.sh", "--dir", pg_dir(pg_dirs), port)
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"port {port} is already in use" in result.stderr


@needs_postgres
@pytest.mark.slow
def test_postgres_start_never_prints_the_url_of_the_server_on_another_port(
    pg_dirs: list[Path],
) -> None:
    """DIR's server runs on one port; another PostgreSQL serves the port asked for."""
    mine, theirs = free_port(), free_port()
    directory, other = pg_dir(pg_dirs), pg_dir(pg_dirs)
    assert run(POSTGRES / "start.sh", "--dir", directory, mine).returncode == 0
    assert run(POSTGRES / "start.sh", "--dir", other, theirs).returncode == 0

    result = run(POSTGRES / "start.sh", "--dir", directory, theirs)
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"already runs on port {mine}" in result.stderr
    assert psql(theirs, "SHOW data_directory") == str(other.resolve() / "data")
