"""The ``statekit`` command through its real Typer app and its installed console script."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

from statekit import (
    ActorContext,
    AgentBinding,
    AgentEventEnvelope,
    BackendInfo,
    BackendURL,
    MemoryBackend,
    RunnerDescriptor,
    ScopeContext,
    StateEntry,
    StatePolicy,
    build_state_scope_key,
    connect,
)
from statekit.backends import registry
from statekit.backends.base import StateWrite
from statekit.cli.app import app
from statekit.cli.runtime import ExitCode
from statekit.errors import BackendUnavailableError
from statekit.testing import new_identity

pytestmark = pytest.mark.memory

runner = CliRunner()
IDENTITY = ["--runner", "r-1", "--binding", "b-1", "--bot", "bot-1", "--conversation", "c-1"]
CONVERSATION = ["--scope", "conversation", *IDENTITY]


class NamedMemory(MemoryBackend):
    """``namedmem://NAME``: one memory store per name, shared by every connect in a test."""

    stores: ClassVar[dict[str, NamedMemory]] = {}

    @classmethod
    def from_url(cls, url: str | BackendURL, **options: Any) -> NamedMemory:
        name = str(url).split("://", 1)[1]
        return cls.stores.setdefault(name, cls())

    async def aclose(self) -> None:
        """Left open: the next command of the test connects to the same store."""


class Down(MemoryBackend):
    """``down://``: a server that refuses every connection."""

    @classmethod
    def from_url(cls, url: str | BackendURL, **options: Any) -> Down:
        return cls()

    async def describe(self) -> BackendInfo:
        raise BackendUnavailableError("connection refused by down://")

    async def get(self, scope_key: str, state_key: str, ttl: float | None = None) -> str | None:
        raise BackendUnavailableError("connection refused by down://")

    async def get_versioned(
        self, scope_key: str, state_key: str, ttl: float | None = None
    ) -> tuple[str | None, int]:
        raise BackendUnavailableError("connection refused by down://")

    async def iter_entries(self) -> AsyncIterator[StateEntry]:
        raise BackendUnavailableError("connection refused by down://")
        yield  # an async generator, like a real backend's


class Hangs(Down):
    """``hangs://``: a server that never answers."""

    @classmethod
    def from_url(cls, url: str | BackendURL, **options: Any) -> Hangs:
        return cls()

    async def describe(self) -> BackendInfo:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


@pytest.fixture(autouse=True)
def test_schemes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    NamedMemory.stores = {}
    for scheme, cls in (("namedmem", "NamedMemory"), ("down", "Down"), ("hangs", "Hangs")):
        entry = registry.Registration(f"{__name__}:{cls}")
        monkeypatch.setitem(registry.BUILTIN_BACKENDS, scheme, entry)
    monkeypatch.delenv("STATEKIT_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no stray ./statekit.db or .env


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def conversation_key(runner_id: str = "r-1") -> str:
    key = build_state_scope_key(
        "conversation",
        AgentEventEnvelope(bot_id="bot-1", conversation_id="c-1"),
        AgentBinding(binding_id="b-1"),
        RunnerDescriptor(id=runner_id),
    )
    assert key is not None
    return key


def test_set_get_list_delete_round_trip_by_identity() -> None:
    url = ["--url", "namedmem://a"]
    result = cli("set", "profile", '{"lang": "fr"}', *CONVERSATION, *url)
    assert result.exit_code == 0, result.output
    assert cli("set", "profile.theme", '"dark"', *CONVERSATION, *url).exit_code == 0

    got = cli("get", "profile", *CONVERSATION, *url, "--json")
    assert got.exit_code == 0
    assert json.loads(got.stdout) == {
        "scope_key": conversation_key(),
        "key": "profile",
        "found": True,
        "value": {"lang": "fr"},
        "version": 1,
        "expires_at": None,
        "expires_in": None,
    }
    plain = cli("get", "profile", "--scope-key", conversation_key(), *url)
    assert json.loads(plain.stdout) == {"lang": "fr"}

    listed = cli("list", "--prefix", "profile", *CONVERSATION, *url, "--json")
    assert json.loads(listed.stdout)["keys"] == ["profile", "profile.theme"]
    assert cli("list", *CONVERSATION, *url).stdout.split() == ["profile", "profile.theme"]

    assert cli("delete", "profile", *CONVERSATION, *url).exit_code == 0
    assert cli("delete", "profile", *CONVERSATION, *url).exit_code == 1
    missing = cli("get", "profile", *CONVERSATION, *url)
    assert missing.exit_code == ExitCode.NOT_FOUND_OR_REFUSED
    assert "not found" in missing.stderr


def test_set_stores_the_context_from_identity_options() -> None:
    result = cli("set", "k", "1", *CONVERSATION, "--thread", "t-1", "--url", "namedmem://a")
    assert result.exit_code == 0, result.output
    entries = asyncio.run(entries_of("namedmem://a"))
    assert len(entries) == 1
    [(_, context)] = entries.values()
    assert (context.runner_id, context.binding_identity, context.scope) == (
        "r-1",
        "b-1",
        "conversation",
    )
    assert (context.bot_id, context.conversation_id, context.thread_id) == ("bot-1", "c-1", "t-1")
    assert context.actor_id is None


def test_set_stores_what_an_event_of_the_same_identity_stores() -> None:
    args = ("set", "k", "1", "--scope", "actor", *IDENTITY, "--actor", "u-1", "--thread", "t")
    assert cli(*args, "--url", "namedmem://cli").exit_code == 0
    event = AgentEventEnvelope(
        bot_id="bot-1", conversation_id="c-1", thread_id="t", actor=ActorContext(actor_id="u-1")
    )
    binding = AgentBinding(binding_id="b-1", state_policy=StatePolicy(state_scopes=["actor"]))
    store = connect("namedmem://host")
    ok = store.apply_update_from_event(event, binding, RunnerDescriptor(id="r-1"), "actor", "k", 1)
    assert asyncio.run(ok) == (True, None)
    by_cli, by_host = (
        asyncio.run(entries_of("namedmem://cli")),
        asyncio.run(entries_of("namedmem://host")),
    )
    assert by_cli == by_host
    [(_, context)] = by_cli.values()
    assert (context.actor_type, context.actor_id, context.subject_type) == ("user", "u-1", None)


def test_set_by_scope_key_takes_the_scope_from_the_key() -> None:
    key = conversation_key()
    result = cli("set", "k", "[1, 2]", "-k", key, "--runner", "r-1", "--url", "namedmem://a")
    assert result.exit_code == 0, result.output
    assert json.loads(cli("get", "k", "-k", key, "--url", "namedmem://a").stdout) == [1, 2]


def test_list_all_follows_every_page() -> None:
    async def fill() -> None:
        store = connect("namedmem://a")
        for i in range(130):
            await store.state_set(conversation_key(), f"k{i:03}", i, "r-1", "b-1", "conversation")

    asyncio.run(fill())
    page = json.loads(cli("list", *CONVERSATION, "--url", "namedmem://a", "--json").stdout)
    assert len(page["keys"]) == 100
    assert page["has_more"] is True
    every = json.loads(
        cli("list", "--all", *CONVERSATION, "--url", "namedmem://a", "--json").stdout
    )
    assert every == {
        "scope_key": conversation_key(),
        "keys": [f"k{i:03}" for i in range(130)],
        "has_more": False,
    }


def test_snapshot_by_identity_and_by_scope_key() -> None:
    url = ["--url", "namedmem://a"]
    cli("set", "mood", '"calm"', *CONVERSATION, *url)
    cli("set", "lang", '"fr"', "--scope", "actor", *IDENTITY, "--actor", "u-1", *url)
    snap = json.loads(cli("snapshot", *IDENTITY, "--actor", "u-1", *url, "--json").stdout)
    assert snap == {
        "conversation": {"mood": "calm", "external.conversation_id": "c-1"},
        "actor": {"lang": "fr"},
        "subject": {},
        "runner": {},
    }
    one = json.loads(cli("snapshot", "-k", conversation_key(), *url, "--json").stdout)
    assert one == {"mood": "calm"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{lang: fr}", "not valid JSON"),
        ("NaN", "not JSON-serializable"),
        ('"' + "x" * 262_144 + '"', "exceeds limit"),
    ],
)
def test_refused_values_write_nothing(value: str, message: str) -> None:
    result = cli("set", "k", value, *CONVERSATION, "--url", "namedmem://a")
    assert result.exit_code in (ExitCode.USAGE, ExitCode.NOT_FOUND_OR_REFUSED)
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert cli("get", "k", *CONVERSATION, "--url", "namedmem://a").exit_code == 1


def test_invalid_json_is_a_usage_error() -> None:
    result = cli("set", "k", "{oops", *CONVERSATION, "--url", "namedmem://a")
    assert result.exit_code == ExitCode.USAGE.value == 2


def test_conditional_set_through_the_store() -> None:
    url = ["--url", "namedmem://a"]
    assert cli("set", "n", "1", *CONVERSATION, *url, "--expected-version", "0").exit_code == 0
    stale = cli("set", "n", "2", *CONVERSATION, *url, "--expected-version", "0", "--json")
    assert stale.exit_code == 1
    assert "Version conflict" in json.loads(stale.stdout)["error"]
    assert cli("set", "n", "2", *CONVERSATION, *url, "--expected-version", "1").exit_code == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["get", "k"], "--scope-key, or with --scope and --runner"),
        (["get", "k", "--scope", "conversation", "--conversation", "c"], "--runner is required"),
        (["get", "k", "--scope", "actor", "--runner", "r"], "needs --actor"),
        (["get", "k", "--scope", "galaxy", "--runner", "r"], "invalid --scope"),
        (["set", "k", "1", "-k", "conversation:v2:abc"], "set needs --runner"),
        (["set", "k", "1", "-k", "opaque", "--runner", "r"], "give --scope"),
        (["get", "k", "-k", "x", "--url", "nosuch://h"], "known schemes"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = cli(*args, *([] if "--url" in args else ["--url", "namedmem://a"]))
    assert result.exit_code == ExitCode.USAGE
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_backend_down_is_exit_3_without_traceback() -> None:
    result = cli("get", "k", *CONVERSATION, "--url", "down://")
    assert result.exit_code == ExitCode.BACKEND_UNAVAILABLE.value == 3
    assert result.stderr.strip() == (
        "statekit: error: backend unavailable: connection refused by down://"
    )


def test_doctor_reports_a_healthy_store() -> None:
    result = cli("doctor", "--url", "namedmem://a", "--json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["healthy"] is True
    assert report["backend"] == "memory"
    assert report["latency_ms"] >= 0
    assert "healthy" in cli("doctor", "--url", "namedmem://a").stdout


@pytest.mark.parametrize(("url", "error"), [("down://", "refused"), ("hangs://", "no answer")])
def test_doctor_exits_3_when_unhealthy(url: str, error: str) -> None:
    result = cli("doctor", "--url", url, "--timeout", "0.2", "--json")
    assert result.exit_code == ExitCode.BACKEND_UNAVAILABLE
    assert json.loads(result.stdout)["healthy"] is False
    assert error in result.stderr


def test_bench_measures_and_cleans_up() -> None:
    result = cli("bench", "--ops", "30", "--concurrency", "4", "--url", "namedmem://a", "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    for name in ("set", "get", "snapshot"):
        assert figures[f"{name}_ops_per_s"] > 0
    assert figures["runner_id"].startswith("statekit-bench-")
    assert NamedMemory.stores["a"]._scopes == {}


# ---- migrate --------------------------------------------------------------------


async def fill_source(url: str, scopes: int, keys: int) -> None:
    async with connect(url) as store:
        for s in range(scopes):
            ident = new_identity()
            for k in range(keys):
                update = ("conversation", f"k{k}", {"s": s, "k": k})
                await store.apply_updates_from_event(
                    ident.event, ident.binding, ident.descriptor, [update]
                )


async def entries_of(url: str) -> dict[tuple[str, str], tuple[str, Any]]:
    return {
        (e.scope_key, e.state_key): (e.value_json, e.context) async for e in connect(url).export()
    }


def test_migrate_copies_entries_with_context_and_checks_counts() -> None:
    asyncio.run(fill_source("namedmem://src", scopes=7, keys=9))
    result = cli(
        "migrate",
        "--from",
        "namedmem://src",
        "--to",
        "namedmem://dst",
        "--batch-size",
        "10",
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["entries"], report["scopes"], report["verified"]) == (63, 7, True)
    assert asyncio.run(entries_of("namedmem://dst")) == asyncio.run(entries_of("namedmem://src"))

    again = cli("migrate", "--url", "namedmem://src", "--to", "namedmem://dst")
    assert again.exit_code == 0  # idempotent
    assert "count check: ok" in again.stdout
    assert asyncio.run(entries_of("namedmem://dst")) == asyncio.run(entries_of("namedmem://src"))


def test_migrate_dry_run_writes_nothing() -> None:
    asyncio.run(fill_source("namedmem://src", scopes=2, keys=3))
    result = cli("migrate", "--from", "namedmem://src", "--to", "namedmem://dst", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would copy 6 entries in 2 scopes" in result.stdout
    assert asyncio.run(entries_of("namedmem://dst")) == {}


def test_migrate_fails_the_count_check_when_target_scopes_differ() -> None:
    asyncio.run(fill_source("namedmem://src", scopes=1, keys=2))
    (scope_key, _), *_ = asyncio.run(entries_of("namedmem://src"))
    target = connect("namedmem://dst")
    asyncio.run(target.state_set(scope_key, "extra", 1, "r", "b", "conversation"))
    result = cli("migrate", "--from", "namedmem://src", "--to", "namedmem://dst", "--json")
    assert result.exit_code == ExitCode.CHECK_FAILED.value == 4
    report = json.loads(result.stdout)
    assert report["mismatches"] == [{"scope_key": scope_key, "source": 2, "target": 3}]


def test_migrate_skips_entries_the_store_would_refuse() -> None:
    source = NamedMemory.from_url("namedmem://src")
    asyncio.run(fill_source("namedmem://src", scopes=1, keys=1))
    bad = source.set(
        StateWrite("runner:v2:x", "bad", "{not json", ScopeContext("r", "b", "runner"))
    )
    asyncio.run(bad)
    result = cli("migrate", "--from", "namedmem://src", "--to", "namedmem://dst", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["skipped_invalid"] == 1
    assert len(asyncio.run(entries_of("namedmem://dst"))) == 1


def test_migrate_refuses_the_same_store_and_needs_a_target() -> None:
    same = cli("migrate", "--from", "namedmem://a", "--to", "namedmem://a")
    assert same.exit_code == ExitCode.USAGE
    assert cli("migrate", "--from", "namedmem://a").exit_code == ExitCode.USAGE


def test_migrate_from_an_unreachable_source_exits_3() -> None:
    result = cli("migrate", "--from", "down://", "--to", "namedmem://a")
    assert result.exit_code == ExitCode.BACKEND_UNAVAILABLE
    assert result.stderr.startswith("statekit: error: backend unavailable")


# ---- the installed console script ------------------------------------------------


def test_console_script_runs_and_reports_errors_without_traceback(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "statekit"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    ok = subprocess.run(
        [str(script), "doctor", "--url", "memory://", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["backend"] == "memory"

    bad = subprocess.run(
        [str(script), "get", "k", "-k", "s", "--url", "nosuch://user:pw@h"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert bad.returncode == ExitCode.USAGE
    assert "Traceback" not in bad.stderr
    assert "pw" not in bad.stderr.replace("pw@", "")  # only as masked user info
    assert ":***@h" in bad.stderr or "nosuch" in bad.stderr


def test_unexpected_errors_are_one_line_with_exit_70(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("boom")

    monkeypatch.setattr(NamedMemory, "get_versioned", broken)
    result = cli("get", "k", *CONVERSATION, "--url", "namedmem://a")
    assert result.exit_code == ExitCode.INTERNAL
    assert "internal error (KeyError" in result.stderr


def test_snapshot_of_a_scope_skips_stored_invalid_json() -> None:
    source = NamedMemory.from_url("namedmem://a")
    context = ScopeContext("r", "b", "runner")
    asyncio.run(source.set(StateWrite("runner:v2:x", "bad", "{not json", context)))
    asyncio.run(source.set(StateWrite("runner:v2:x", "good", "[1]", context)))
    result = cli("snapshot", "-k", "runner:v2:x", "--url", "namedmem://a", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"good": [1]}
    assert "skipped a stored value: undecodable JSON" in result.stderr
    assert "bad" not in result.stderr


def test_without_the_cli_extra_the_command_says_what_to_install() -> None:
    code = "import sys; sys.modules['typer'] = None; from statekit.cli import main; main()"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == ExitCode.USAGE
    assert "pip install 'statekit[cli]'" in out.stderr
    assert "Traceback" not in out.stderr
