"""Configuring expiry: lifetimes, scope names, settings, and the refusal of expiry on a
backend that cannot keep it."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import statekit
from statekit import NEVER, ConfigurationError, MemoryBackend, StateStore, connect
from statekit.connection import load_settings
from statekit.expiry import MAX_DURATION, ExpiryPolicy, parse_duration

pytestmark = pytest.mark.memory


class _NoExpiry(MemoryBackend):
    capabilities = frozenset({statekit.Capability.VERSIONS})


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No STATEKIT_* variable and an empty working directory (no .env)."""
    for name in list(os.environ):
        if name.startswith("STATEKIT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---- lifetimes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_as", "seconds"),
    [
        (30, 30.0),
        (1.5, 1.5),
        (timedelta(days=30), 30 * 86400.0),
        (timedelta(milliseconds=250), 0.25),
        ("90", 90.0),
        ("30s", 30.0),
        ("15m", 900.0),
        ("12h", 43200.0),
        ("30d", 2592000.0),
        (" 2H ", 7200.0),
        ("1.5h", 5400.0),
        ("0.5", 0.5),
        ("never", NEVER),
        ("Never", NEVER),
        (NEVER, NEVER),
    ],
)
def test_lifetimes_are_read_in_every_accepted_form(given_as: Any, seconds: float) -> None:
    assert parse_duration(given_as) == seconds


@pytest.mark.parametrize(
    "bad",
    [0, -1, 0.0, "0", "0s", "-5", "", " ", "abc", "5w", "1e3", "30 days", "s", "1.h",
     True, False, None, float("nan"), -NEVER, timedelta(0), timedelta(seconds=-1),
     MAX_DURATION + 1, "36501d", [30], b"30"],
)  # fmt: skip
def test_anything_else_is_refused_naming_the_setting(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"^expiry\['actor'\]: .* is not a lifetime"):
        parse_duration(bad, "expiry['actor']")
    if bad is not None:  # None in a policy means "no lifetime"
        with pytest.raises(ConfigurationError, match=r"^expiry\['actor'\]: "):
            ExpiryPolicy.parse({"actor": bad})


@given(amount=st.integers(1, 36500), unit=st.sampled_from(["", "s", "m", "h", "d"]))
def test_a_whole_number_with_a_unit_is_that_many_units(amount: int, unit: str) -> None:
    factor = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    if amount * factor > MAX_DURATION:
        with pytest.raises(ConfigurationError):
            parse_duration(f"{amount}{unit}")
    else:
        assert parse_duration(f"{amount}{unit}") == amount * factor


def test_a_refused_lifetime_is_quoted_short() -> None:
    with pytest.raises(ConfigurationError) as refused:
        parse_duration("x" * 500)
    assert len(str(refused.value)) < 200


# ---- policies --------------------------------------------------------------------------


def test_a_policy_maps_scope_names_and_leaves_out_none() -> None:
    policy = ExpiryPolicy.parse({"conversation": "30d", "subject": 3600, "actor": None})
    assert policy.ttls == {"conversation": 2592000.0, "subject": 3600.0}
    assert policy.for_scope("actor") is None
    assert policy.for_scope_key("subject:v2:abc") == 3600.0
    assert policy.for_scope_key("runner:v2:abc") is None
    assert policy.for_scope_key("no-scope-prefix") is None
    assert not ExpiryPolicy.parse(None)
    assert not ExpiryPolicy.parse({"actor": None})


@pytest.mark.parametrize("bad", [{"conversations": 30}, {"": 30}, {1: 30}, [("actor", 30)], "30d"])
def test_unknown_scope_names_and_non_mappings_are_refused(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="expiry"):
        ExpiryPolicy.parse(bad)
    with pytest.raises(ConfigurationError, match="expiry"):
        StateStore(MemoryBackend(), expiry=bad)


# ---- the store ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"expiry": {"conversation": 60}},
        {"expiry": {"conversation": "never"}},
        {"refresh_on_read": True},
        {"sweep_interval": 60},
    ],
)
def test_expiry_on_a_backend_without_it_is_a_configuration_error(options: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"_NoExpiry does not support expiry"):
        StateStore(_NoExpiry(), **options)


def test_a_backend_without_expiry_opens_without_expiry_options() -> None:
    store = StateStore(_NoExpiry(), expiry={"actor": None}, refresh_on_read=False)
    assert not store.expiry


@pytest.mark.parametrize("bad", [0, -1, "never", "soon", True])
def test_a_bad_sweep_interval_is_a_configuration_error(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"^sweep_interval: "):
        StateStore(MemoryBackend(), sweep_interval=bad)


def test_connect_takes_expiry_by_keyword(clean_env: Path) -> None:
    store = connect("memory://", expiry={"conversation": timedelta(days=30), "subject": "12h"})
    assert store.expiry.ttls == {"conversation": 2592000.0, "subject": 43200.0}
    assert connect("memory://").expiry.ttls == {}


def test_settings_give_lifetimes_refresh_and_the_sweep_interval(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATEKIT_EXPIRY_CONVERSATION", "30d")
    monkeypatch.setenv("STATEKIT_EXPIRY_ACTOR", "never")
    monkeypatch.setenv("STATEKIT_EXPIRY_RUNNER", "")  # empty: unset
    monkeypatch.setenv("STATEKIT_REFRESH_ON_READ", "true")
    monkeypatch.setenv("STATEKIT_SWEEP_INTERVAL", "5m")
    settings = load_settings()
    assert settings.store_options() == {
        "expiry": {"conversation": 2592000.0, "actor": NEVER},
        "refresh_on_read": True,
        "sweep_interval": 300.0,
        "telemetry": True,
    }
    assert settings.backend_options() == {}
    store = connect("memory://")
    assert store.expiry.ttls == {"conversation": 2592000.0, "actor": NEVER}


def test_keywords_win_over_settings_scope_by_scope(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_env / ".env").write_text("STATEKIT_EXPIRY_SUBJECT=1h\n")
    monkeypatch.setenv("STATEKIT_EXPIRY_CONVERSATION", "30d")
    monkeypatch.setenv("STATEKIT_EXPIRY_ACTOR", "2h")
    store = connect("memory://", expiry={"conversation": 60, "actor": None})
    assert store.expiry.ttls == {"conversation": 60.0, "subject": 3600.0}


def test_a_bad_setting_names_its_variable(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATEKIT_EXPIRY_ACTOR", "0")
    with pytest.raises(ConfigurationError, match="STATEKIT_EXPIRY_ACTOR"):
        connect("memory://")


def test_expiry_settings_on_a_backend_without_expiry_fail_at_connect(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATEKIT_EXPIRY_CONVERSATION", "30d")
    monkeypatch.setattr(MemoryBackend, "capabilities", _NoExpiry.capabilities)
    with pytest.raises(ConfigurationError, match="does not support expiry"):
        connect("memory://")
