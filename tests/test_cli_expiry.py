"""Expiry on the command line: ``set --expiry``, deadlines in ``--json``, ``sweep`` and
``migrate``, over memory stores whose clock the tests move."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from test_cli import CONVERSATION, IDENTITY, NamedMemory, cli, conversation_key, test_schemes

from statekit.cli.runtime import ExitCode

__all__ = ["test_schemes"]  # the autouse fixture registering namedmem://

pytestmark = pytest.mark.memory

URL = ["--url", "namedmem://a"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """The clock of namedmem://a and namedmem://b."""
    clock = Clock()
    for name in ("a", "b"):
        NamedMemory.stores[name] = NamedMemory(clock=clock)
    return clock


def get_json(*args: str) -> dict[str, Any]:
    result = cli("get", *args, "--json")
    return dict(json.loads(result.stdout))


def test_set_expiry_shows_in_get_json(clock: Clock) -> None:
    assert cli("set", "k", '"v"', *CONVERSATION, *URL, "--expiry", "30m").exit_code == 0
    got = get_json("k", *CONVERSATION, *URL)
    deadline = datetime.fromisoformat(got["expires_at"])
    assert deadline.timestamp() == clock.now + 1800
    assert deadline.utcoffset() == timedelta(0)
    assert 0 < got["expires_in"] <= 1800
    assert got["value"] == "v"
    assert got["found"] is True


def test_never_and_no_expiry_show_null(clock: Clock) -> None:
    assert cli("set", "k", '"v"', *CONVERSATION, *URL, "--expiry", "1h").exit_code == 0
    assert cli("set", "k", '"w"', *CONVERSATION, *URL, "--expiry", "never").exit_code == 0
    got = get_json("k", *CONVERSATION, *URL)
    assert (got["expires_at"], got["expires_in"]) == (None, None)
    absent = get_json("other", *CONVERSATION, *URL)
    assert absent["found"] is False
    assert absent["expires_at"] is None


def test_an_expired_scope_reads_as_absent(clock: Clock) -> None:
    assert cli("set", "k", '"v"', *CONVERSATION, *URL, "--expiry", "10s").exit_code == 0
    clock.now += 10
    result = cli("get", "k", *CONVERSATION, *URL)
    assert result.exit_code == ExitCode.NOT_FOUND_OR_REFUSED


def test_a_bad_expiry_is_refused_and_writes_nothing(clock: Clock) -> None:
    result = cli("set", "k", '"v"', *CONVERSATION, *URL, "--expiry", "soon")
    assert result.exit_code in (ExitCode.USAGE, ExitCode.NOT_FOUND_OR_REFUSED)
    assert "soon" in result.stderr
    assert "Traceback" not in result.output
    assert cli("get", "k", *CONVERSATION, *URL).exit_code == ExitCode.NOT_FOUND_OR_REFUSED


def test_snapshot_json_expiry_reports_each_scope(clock: Clock) -> None:
    assert cli("set", "k", '"v"', *CONVERSATION, *URL, "--expiry", "1d").exit_code == 0
    assert cli("set", "p", "1", "--scope", "runner", "--runner", "r-1", *URL).exit_code == 0
    plain = json.loads(cli("snapshot", *IDENTITY, *URL, "--json").stdout)
    both = json.loads(cli("snapshot", *IDENTITY, *URL, "--json", "--expiry").stdout)
    assert both["snapshot"] == plain
    assert {"conversation", "runner"} <= set(both["expiry"]) <= set(plain)
    assert both["expiry"]["conversation"]["expires_in"] == 86400
    assert both["expiry"]["runner"] == {"expires_at": None, "expires_in": None}
    key = conversation_key()
    one = json.loads(cli("snapshot", "-k", key, *URL, "--json", "--expiry").stdout)
    assert one["snapshot"] == {"k": "v"}
    assert one["expiry"][key]["expires_in"] == 86400


def test_sweep_reclaims_expired_scopes(clock: Clock) -> None:
    assert cli("set", "k", '"v"', *CONVERSATION, *URL, "--expiry", "1m").exit_code == 0
    assert cli("set", "p", "1", "--scope", "runner", "--runner", "r-1", *URL).exit_code == 0
    before = json.loads(cli("sweep", *URL, "--json").stdout)
    assert (before["scopes"], before["entries"]) == (0, 0)
    clock.now += 60
    after = cli("sweep", *URL)
    assert after.exit_code == 0
    assert after.stdout.strip() == "swept 1 expired scopes (1 entries) on memory"
    assert cli("get", "p", "--scope", "runner", "--runner", "r-1", *URL).exit_code == 0


def test_migrate_keeps_deadlines_and_leaves_expired_scopes_out(clock: Clock) -> None:
    assert cli("set", "live", '"v"', *CONVERSATION, *URL, "--expiry", "2h").exit_code == 0
    runner = ["--scope", "runner", "--runner", "r-1"]
    assert cli("set", "gone", '"v"', *runner, *URL, "--expiry", "1h").exit_code == 0
    assert cli("set", "kept", '"v"', "--scope", "runner", "--runner", "r-2", *URL).exit_code == 0
    clock.now += 3600
    result = cli("migrate", "--from", "namedmem://a", "--to", "namedmem://b", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # The source's export never holds an expired scope; skipped_expired counts only the
    # entries whose scope expired between their export and their import.
    assert (report["entries"], report["skipped_expired"], report["verified"]) == (2, 0, True)
    target = ["--url", "namedmem://b"]
    assert get_json("live", *CONVERSATION, *target)["expires_in"] == 3600
    assert cli("get", "gone", *runner, *target).exit_code == ExitCode.NOT_FOUND_OR_REFUSED
    kept = get_json("kept", "--scope", "runner", "--runner", "r-2", *target)
    assert kept["found"] is True
    assert kept["expires_at"] is None
