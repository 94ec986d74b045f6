"""Access and erasure requests on the command line: ``find``, ``export`` and ``erase``
over a memory store shared by the commands of a test."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from test_cli import NamedMemory, cli, runner, test_schemes

from statekit import ScopeContext
from statekit.backends.base import StateWrite
from statekit.cli import access
from statekit.cli.app import app
from statekit.cli.runtime import ExitCode

__all__ = ["test_schemes"]  # the autouse fixture registering namedmem://

pytestmark = pytest.mark.memory

URL = ["--url", "namedmem://a"]
U7 = ["--actor", "u-7", "--actor-type", "user"]


def _set(scope: str, key: str, value: str, *identity: str, runner_id: str = "r-1") -> None:
    result = cli("set", key, value, "--scope", scope, "--runner", runner_id, *identity, *URL)
    assert result.exit_code == 0, result.output


@pytest.fixture
def people() -> None:
    """u-7's actor scopes on two runners, u-70's, and a conversation u-7 wrote in."""
    _set("actor", "lang", '"fr"', "--actor", "u-7", "--binding", "b-1")
    _set("actor", "tz", '"CET"', "--actor", "u-7", "--binding", "b-1")
    _set("actor", "lang", '"de"', "--actor", "u-7", runner_id="r-2")
    _set("actor", "lang", '"en"', "--actor", "u-70")
    _set("conversation", "topic", '"billing"', "--conversation", "c-1", "--actor", "u-7")


def _json(*args: str) -> Any:
    result = cli(*args, *URL, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.usefixtures("people")
def test_find_lists_the_matching_scopes() -> None:
    found = _json("find", *U7)
    assert found["total"] == {"scopes": 2, "entries": 3}
    assert {(s["scope"], s["context"]["runner_id"], s["entries"]) for s in found["scopes"]} == {
        ("actor", "r-1", 2),
        ("actor", "r-2", 1),
    }
    lines = cli("find", "--conversation", "c-1", *URL).stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("conversation:v2:")
    assert lines[0].endswith("\tconversation\t1 entries")


@pytest.mark.usefixtures("people")
def test_export_writes_one_json_line_per_entry(tmp_path: Path) -> None:
    result = cli("export", *U7, "--runner", "r-1", *URL)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted((line["state_key"], line["value"]) for line in lines) == [
        ("lang", "fr"),
        ("tz", "CET"),
    ]
    assert set(lines[0]) == {
        "scope_key",
        "state_key",
        "value",
        "context",
        "created_at",
        "updated_at",
        "version",
        "expires_at",
    }
    assert lines[0]["context"]["actor_id"] == "u-7"
    assert (lines[0]["version"], lines[0]["expires_at"]) == (1, None)
    out = tmp_path / "u-7.jsonl"
    summary = _json("export", *U7, "--output", str(out))
    assert summary == {"output": str(out), "scopes": 2, "entries": 3}
    assert len(out.read_text(encoding="utf-8").splitlines()) == 3
    everything = cli("export", *URL)
    assert len(everything.stdout.splitlines()) == 5


@pytest.mark.usefixtures("people")
def test_erase_with_yes_removes_the_actor_scopes_and_not_the_conversation() -> None:
    dry = _json("erase", *U7, "--dry-run")
    assert dry == {"dry_run": True, "scopes": 2, "entries": 3, "by_scope": {"actor": 2}}
    assert _json("find", *U7)["total"] == {"scopes": 2, "entries": 3}
    plain = cli("erase", *U7, "--dry-run", *URL)
    assert plain.stdout == "would erase 2 scopes (3 entries): actor 2; nothing removed\n"
    erased = cli("erase", *U7, "--yes", *URL)
    assert erased.exit_code == 0, erased.output
    assert erased.stdout == "erased 2 scopes (3 entries): actor 2\n"
    assert _json("find", *U7)["total"] == {"scopes": 0, "entries": 0}
    assert _json("find", "--actor", "u-70")["total"]["scopes"] == 1
    assert _json("find", "--conversation", "c-1")["total"]["scopes"] == 1


@pytest.mark.usefixtures("people")
def test_erase_off_a_terminal_needs_yes() -> None:
    result = cli("erase", *U7, *URL)
    assert result.exit_code == ExitCode.USAGE
    assert "pass --yes when stdin is not a terminal" in result.stderr
    assert _json("find", *U7)["total"]["scopes"] == 2


@pytest.mark.usefixtures("people")
@pytest.mark.parametrize(("answer", "erased"), [("y\n", True), ("n\n", False), ("\n", False)])
def test_erase_on_a_terminal_asks_first(
    monkeypatch: pytest.MonkeyPatch, answer: str, erased: bool
) -> None:
    monkeypatch.setattr(access, "_stdin_is_terminal", lambda: True)
    result = runner.invoke(app, ["erase", *U7, *URL], input=answer)
    assert "Erase 2 scopes (3 entries) matching actor_id=u-7, actor_type=user?" in result.stderr
    assert result.exit_code == (0 if erased else ExitCode.NOT_FOUND_OR_REFUSED)
    assert _json("find", *U7)["total"]["scopes"] == (0 if erased else 2)
    if not erased:
        assert "not confirmed: nothing erased" in result.stderr


REFUSED_OPTIONS = {
    "none": [],
    "scope-only": ["--scope", "actor"],
    "type-alone": ["--actor-type", "user"],
    "empty": ["--actor", ""],
    "bad-scope": ["--scope", "people", "--actor", "u-7"],
    "two-scopes-fields": ["--conversation", "c-1", "--actor", "u-7"],
}
# export without identity options exports everything, not a refusal.
REFUSED_COMMANDS = [
    pytest.param(command, options, id=f"{name}-{command}")
    for command in ("find", "erase", "export")
    for name, options in REFUSED_OPTIONS.items()
    if options or command != "export"
]


@pytest.mark.parametrize(("command", "options"), REFUSED_COMMANDS)
def test_a_refused_filter_is_a_usage_error(command: str, options: list[str]) -> None:
    NamedMemory.stores["a"] = NamedMemory()
    result = cli(command, *options, "--yes" if command == "erase" else "--json", *URL)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert result.stderr.startswith("statekit: error: ")
    assert len(result.stderr.splitlines()) == 1


def test_export_keeps_a_stored_text_that_is_not_json() -> None:
    store = NamedMemory.stores.setdefault("a", NamedMemory())
    context = ScopeContext("r-1", "b-1", "actor", actor_type="user", actor_id="u-7")
    asyncio.run(store.set(StateWrite("actor:v2:legacy", "old", "{not json", context)))
    (line,) = cli("export", *U7, *URL).stdout.splitlines()
    assert json.loads(line)["value"] is None
    assert json.loads(line)["value_json"] == "{not json"
