"""The ``statekit`` command as a user runs it: a real process, real pipes, a SQLite file.

Every test here starts ``python -m statekit.cli`` (the console script's own entry
point) in a fresh directory with no ``STATEKIT_*`` variable, so the embedded default
``./statekit.db`` is the store unless a test names another.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import statekit
from statekit import MAX_VALUE_JSON_BYTES
from statekit.cli.runtime import ExitCode

pytestmark = pytest.mark.sqlite

RUNNER = ["--scope", "runner", "--runner", "r-1"]
DOCTOR_LINES = ["url", "backend", "server_version", "layout", "namespace", "latency_ms"]
TIMEOUT = 60


def statekit_cmd(
    cwd: Path, *args: str, stdin: bytes | None = None, python_flags: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run the command in ``cwd`` with output on pipes (not a terminal)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATEKIT_")}
    result = subprocess.run(
        [sys.executable, *python_flags, "-m", "statekit.cli", *args],
        input=stdin,
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=TIMEOUT,
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def stored_value(cwd: Path, key: str) -> object:
    got = statekit_cmd(cwd, "get", key, *RUNNER, "--json")
    return json.loads(got.stdout)["value"] if got.returncode == 0 else None


# ---- 13.5 --version ---------------------------------------------------------------


def test_version_prints_the_package_version(tmp_path: Path) -> None:
    result = statekit_cmd(tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"statekit {statekit.__version__}\n"
    assert result.stderr == ""
    assert re.fullmatch(r"statekit \d+\.\d+\.\d+\n", result.stdout)


def test_the_installed_console_script_prints_the_version(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "statekit"
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, cwd=tmp_path, timeout=TIMEOUT
    )
    assert (result.returncode, result.stdout) == (0, f"statekit {statekit.__version__}\n")


# ---- 13.6 values from stdin and files ---------------------------------------------


def _json_of_size(size: int) -> bytes:
    """A JSON string value whose encoded text is exactly ``size`` bytes."""
    return json.dumps("x" * (size - 2)).encode()


@pytest.mark.parametrize("source", ["stdin", "file"])
def test_a_value_just_under_the_limit_is_set_from_stdin_or_a_file(
    tmp_path: Path, source: str
) -> None:
    text = _json_of_size(MAX_VALUE_JSON_BYTES)
    assert len(text) == MAX_VALUE_JSON_BYTES
    if source == "stdin":
        result = statekit_cmd(tmp_path, "set", "big", "-", *RUNNER, stdin=text)
    else:
        (tmp_path / "value.json").write_bytes(text + b"\n")
        result = statekit_cmd(tmp_path, "set", "big", "@value.json", *RUNNER)
    assert result.returncode == 0, result.stderr
    assert stored_value(tmp_path, "big") == json.loads(text)


@pytest.mark.parametrize("source", ["stdin", "file"])
def test_a_value_over_the_limit_is_refused_and_nothing_is_written(
    tmp_path: Path, source: str
) -> None:
    text = _json_of_size(MAX_VALUE_JSON_BYTES + 1)
    if source == "stdin":
        result = statekit_cmd(tmp_path, "set", "big", "-", *RUNNER, stdin=text)
    else:
        (tmp_path / "value.json").write_bytes(text)
        result = statekit_cmd(tmp_path, "set", "big", "@value.json", *RUNNER)
    assert result.returncode == ExitCode.NOT_FOUND_OR_REFUSED
    assert result.stderr == (
        f"statekit: refused: Value size {MAX_VALUE_JSON_BYTES + 1} bytes exceeds limit "
        f"{MAX_VALUE_JSON_BYTES} bytes\n"
    )
    assert statekit_cmd(tmp_path, "get", "big", *RUNNER).returncode == 1


def test_input_far_over_the_limit_is_not_read_whole(tmp_path: Path) -> None:
    huge = b"[" + b" " * (64 * MAX_VALUE_JSON_BYTES) + b"]"
    result = statekit_cmd(tmp_path, "set", "big", "-", *RUNNER, stdin=huge)
    assert result.returncode == ExitCode.NOT_FOUND_OR_REFUSED
    assert "holds more than" in result.stderr
    assert not (tmp_path / "statekit.db").exists()  # refused before the store is opened


@pytest.mark.parametrize(
    ("argument", "content", "message"),
    [
        ("@missing.json", None, "cannot read the value file 'missing.json'"),
        ("@", None, "give a file name after '@'"),
        ("@bad.json", b"{oops", "the value in 'bad.json' is not valid JSON"),
        ("@latin1.json", b'"caf\xe9"', "the value in 'latin1.json' is not UTF-8 text"),
        ("-", b"", "the value from stdin is not valid JSON"),
    ],
)
def test_unreadable_or_invalid_value_input_is_a_usage_error(
    tmp_path: Path, argument: str, content: bytes | None, message: str
) -> None:
    if content is not None and argument.startswith("@"):
        (tmp_path / argument[1:]).write_bytes(content)
    stdin = content if argument == "-" else b""
    result = statekit_cmd(tmp_path, "set", "k", argument, *RUNNER, stdin=stdin)
    assert result.returncode == ExitCode.USAGE
    assert result.stderr.startswith(f"statekit: error: {message}")
    assert len(result.stderr.splitlines()) == 1


# ---- 13.7 usage errors are one line ------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["get", "k", "--bogus"], "get: No such option: --bogus"),
        (["get"], "get: Missing argument 'key'"),
        (["list", *RUNNER, "--limit", "abc"], "list: Invalid value for '--limit'"),
        (["list", *RUNNER, "--limit", "101"], "list: Invalid value for '--limit'"),
        (["set", "k", "1", *RUNNER, "--expected-version", "-1"], "set: Invalid value"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["--bogus"], "No such option: --bogus"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = statekit_cmd(tmp_path, *args)
    assert result.returncode == ExitCode.USAGE.value == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"statekit: error: {message}")
    assert "--help" in line


def test_help_still_prints_the_help(tmp_path: Path) -> None:
    result = statekit_cmd(tmp_path, "set", "--help")
    assert result.returncode == 0
    assert "'-' reads it from stdin" in " ".join(result.stdout.split())
    bare = statekit_cmd(tmp_path)
    assert bare.returncode == ExitCode.USAGE
    assert "Commands" in bare.stdout


# ---- 13.8 piped output is never wrapped --------------------------------------------


def test_piped_output_is_one_line_per_result(tmp_path: Path) -> None:
    key = "k" * 120
    result = statekit_cmd(tmp_path, "set", key, '"v"', *RUNNER)
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert re.fullmatch(rf"set '{key}' in runner:v2:[0-9a-f]{{64}}", line)

    long_text = "word " * 60
    assert statekit_cmd(tmp_path, "set", "text", json.dumps(long_text), *RUNNER).returncode == 0
    got = statekit_cmd(tmp_path, "get", "text", *RUNNER)
    assert json.loads(got.stdout) == long_text
    assert got.stdout == json.dumps(long_text) + "\n"

    deep = tmp_path / ("d" * 100)
    deep.mkdir()
    url = f"sqlite+aiosqlite:///{deep}/state.db"
    assert statekit_cmd(tmp_path, "set", "k", "1", *RUNNER, "--url", url).returncode == 0
    doctor = statekit_cmd(tmp_path, "doctor", "--url", url)
    assert doctor.returncode == 0, doctor.stderr
    names = [line.split(" ", 1)[0] for line in doctor.stdout.splitlines()]
    assert names == [*DOCTOR_LINES, "healthy"]
    assert f"url             {url}" in doctor.stdout.splitlines()


# ---- 13.9 snapshot --scope ---------------------------------------------------------


def test_snapshot_with_scope_prints_that_scope_alone(tmp_path: Path) -> None:
    who = ["--runner", "r-1", "--binding", "b", "--conversation", "c-1", "--actor", "u-1"]
    assert statekit_cmd(tmp_path, "set", "lang", '"fr"', "--scope", "actor", *who).returncode == 0
    assert (
        statekit_cmd(tmp_path, "set", "mood", "1", "--scope", "conversation", *who).returncode == 0
    )

    actor = statekit_cmd(tmp_path, "snapshot", "--scope", "actor", *who, "--json")
    assert actor.returncode == 0, actor.stderr
    assert json.loads(actor.stdout) == {"lang": "fr"}
    conversation = statekit_cmd(tmp_path, "snapshot", "--scope", "conversation", *who, "--json")
    # As a host's snapshot has it: seeded with the conversation id.
    assert json.loads(conversation.stdout) == {"mood": 1, "external.conversation_id": "c-1"}
    every = json.loads(statekit_cmd(tmp_path, "snapshot", *who, "--json").stdout)
    assert set(every) == {"conversation", "actor", "subject", "runner"}
    assert every["actor"] == {"lang": "fr"}


def test_snapshot_refuses_a_scope_it_cannot_honour(tmp_path: Path) -> None:
    missing_id = statekit_cmd(tmp_path, "snapshot", "--scope", "actor", "--runner", "r")
    assert missing_id.returncode == ExitCode.USAGE
    assert missing_id.stderr == "statekit: error: the actor scope needs --actor\n"
    key = "conversation:v2:" + "0" * 64
    contradiction = statekit_cmd(tmp_path, "snapshot", "-k", key, "--scope", "actor")
    assert contradiction.returncode == ExitCode.USAGE
    assert "does not match the scope key" in contradiction.stderr
    unknown = statekit_cmd(tmp_path, "snapshot", "--scope", "galaxy", "--runner", "r")
    assert unknown.returncode == ExitCode.USAGE


# ---- 13.10 a short command imports only what it needs -------------------------------


def _imported(tmp_path: Path, *args: str) -> set[str]:
    result = statekit_cmd(tmp_path, *args, python_flags=("-X", "importtime"))
    assert result.returncode in (0, 1), result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip() for line in lines[1:]}


def _loaded(modules: set[str], package: str) -> list[str]:
    return sorted(m for m in modules if m == package or m.startswith(f"{package}."))


def test_version_imports_no_backend_driver(tmp_path: Path) -> None:
    modules = _imported(tmp_path, "--version")
    for package in ("sqlalchemy", "redis", "asyncpg", "aiosqlite", "rich"):
        assert _loaded(modules, package) == [], package


@pytest.mark.parametrize(
    "args", [["get", "k", *RUNNER], ["set", "k", "1", *RUNNER], ["list", *RUNNER]]
)
def test_a_sqlite_command_imports_neither_redis_nor_postgresql_nor_rich(
    tmp_path: Path, args: list[str]
) -> None:
    modules = _imported(tmp_path, *args)
    assert "sqlalchemy.dialects.sqlite" in modules  # the command did reach its store
    for package in ("redis", "asyncpg", "sqlalchemy.dialects.postgresql", "rich"):
        assert _loaded(modules, package) == [], package


#: What a get or set on the embedded default, with nothing configured, has no use for:
#: the settings (no STATEKIT_* variable, no .env: their defaults), OpenTelemetry (no
#: provider can be configured in the process), Rich (no table, no progress bar), the
#: memory backend and the other commands' modules.
NOT_ON_THE_SHORT_PATH = (
    "pydantic_settings",
    "dotenv",
    "statekit.settings",
    "opentelemetry",
    "rich",
    "statekit.backends.memory",
)


def _console_script_imports(cwd: Path, *args: str) -> set[str]:
    """The modules a run of the installed ``statekit`` script imports (its own file,
    run by this interpreter, on the code under test)."""
    script = Path(sys.executable).parent / "statekit"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("STATEKIT_")}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(script), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=TIMEOUT,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip() for line in lines[1:]}


@pytest.mark.parametrize(
    "args",
    [
        ["set", "k", '"hi"', *RUNNER],
        ["get", "k", *RUNNER],
        ["get", "k", "-k", "runner:v2:" + "0" * 64, "--json"],
        ["set", "k", "1", *RUNNER, "--url", "sqlite+aiosqlite:///other.db"],
    ],
)
def test_get_and_set_on_sqlite_import_no_settings_telemetry_or_rich(
    tmp_path: Path, args: list[str]
) -> None:
    assert statekit_cmd(tmp_path, "set", "k", "0", *RUNNER).returncode == 0  # a table in place
    modules = _console_script_imports(tmp_path, *args)
    assert "statekit.cli.app" in modules  # the code under test, not another copy
    assert "sqlalchemy.dialects.sqlite" in modules  # the command did reach its store
    for package in NOT_ON_THE_SHORT_PATH:
        assert _loaded(modules, package) == [], package


def test_a_configured_setting_is_still_read_on_the_short_path(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("STATEKIT_URL=sqlite+aiosqlite:///from-dotenv.db\n")
    assert statekit_cmd(tmp_path, "set", "k", '"dotenv"', *RUNNER).returncode == 0
    assert (tmp_path / "from-dotenv.db").exists()
    assert not (tmp_path / "statekit.db").exists()
    assert stored_value(tmp_path, "k") == "dotenv"
    assert "pydantic_settings" in _console_script_imports(tmp_path, "get", "k", *RUNNER)


# ---- 12.12 a failed SQLite open leaves no thread behind ------------------------------


def test_an_unopenable_sqlite_path_prints_one_line_every_time(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/state.db"

    def attempt(_: int) -> subprocess.CompletedProcess[str]:
        return statekit_cmd(tmp_path, "get", "k", *RUNNER, "--url", url)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(attempt, range(16)))
    for result in results:
        assert result.returncode == ExitCode.BACKEND_UNAVAILABLE
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("statekit: error: backend unavailable:")
        assert "unable to open database file" in lines[0]


# ---- the private names this relies on, pinned to the installed versions --------------


def _pinned(extra: str, package: str) -> None:
    tomllib = pytest.importorskip("tomllib")
    from importlib.metadata import version

    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    [spec] = [r for r in project["optional-dependencies"][extra] if r.startswith(package)]
    assert Requirement(spec).specifier.contains(version(package)), (package, spec)


def test_aiosqlite_worker_thread_is_found_on_the_installed_aiosqlite() -> None:
    aiosqlite = pytest.importorskip("aiosqlite")
    from statekit.backends.sql import sqlite_connect

    _pinned("sqlite", "aiosqlite")
    thread = sqlite_connect.worker_thread(aiosqlite.connect(":memory:"))
    assert isinstance(thread, threading.Thread)
    assert not thread.is_alive()  # started by the first await, never here


def test_click_exceptions_are_those_the_installed_typer_raises() -> None:
    import typer

    from statekit.cli.usage import click_exceptions

    _pinned("cli", "typer")
    exceptions = click_exceptions()
    assert issubclass(typer.BadParameter, exceptions.UsageError)
    assert issubclass(exceptions.NoArgsIsHelpError, exceptions.UsageError)
    assert issubclass(exceptions.UsageError, exceptions.ClickException)
