"""A URL's password never shows: not in a repr, a message, a log record or the CLI's output.

Passwords are drawn from every printable character (``#``, ``/``, ``?``, ``@``, ``:``,
``%``, brackets, quotes, spaces, non-ASCII), put into each URL form statekit takes, and
whatever statekit makes of the URL is searched for them: the masked ``BackendURL``, the
``ConfigurationError`` of a URL it refuses, the backend's repr, the settings' repr, the
error and the DEBUG log records (statekit's fault records included) of an operation
against a server that is not there, and both streams of ``statekit get`` and ``statekit
doctor``. A password counts as shown only when it is recognisable: 4 characters or more
and not in what the same steps show for a neutral password (the URL's other text, the
messages' own words).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from statekit import BackendURL, ConfigurationError, StatekitSettings, connect
from statekit.backends.sql import SQLBackend
from statekit.cli.app import app
from statekit.connection import load_settings
from statekit.url import MASK, mask_password

# Nothing listens on port 1 of the loopback: every connection is refused at once.
FORMS = [
    "redis://:{pw}@127.0.0.1:1/0",
    "redis://user:{pw}@127.0.0.1:1/0?timeout=1",
    "rediss://user:{pw}@127.0.0.1:1/0",
    "redis+cluster://:{pw}@127.0.0.1:1,127.0.0.1:2/0",
    "rediss+cluster://u:{pw}@127.0.0.1:1,127.0.0.1:2,127.0.0.1:3",
    "redis+sentinel://:{pw}@127.0.0.1:1,127.0.0.1:2/mymaster/0",
    "unix://:{pw}@/tmp/statekit-no-such.sock?db=0",
    "postgresql+asyncpg://user:{pw}@127.0.0.1:1/db",
    "postgresql://user:{pw}@127.0.0.1:1/db?pool_size=1",
]
# The cases that once leaked, by hand: an unencoded '#', '/' or '?' ended the masked part.
LEAKED = ["pa#ss1word", "pa/ss1word", "pa?ss1word", "p@ss/w#rd?x", "pa[ss1]word"]
passwords = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("é€😀"),
    min_size=4,
    max_size=16,
)
url_forms = st.sampled_from(FORMS)


# Neutral passwords, one plain and one a URL parser would split: what statekit shows for
# them is the text any password may coincide with ("Stat" is in "StatekitSettings").
_NEUTRAL = ("Qz7Xw9Kv", "Qz7X#w9Kv")
_BASELINES: dict[tuple[str, str], str] = {}


def _recognisable(password: str, baseline: str) -> bool:
    return password not in baseline


def _assert_hidden(password: str, *texts: object) -> None:
    for text in texts:
        assert password not in str(text), f"password shown in: {text!s:.300}"


@contextmanager
def _debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    caplog.clear()
    # The drivers' records and statekit's own, DEBUG included, whatever a host configured.
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="statekit"):
        yield caplog.records


def _logged(records: list[logging.LogRecord]) -> list[str]:
    formatter = logging.Formatter("%(name)s %(message)s")
    return [formatter.format(record) for record in records]


def _shown_when_parsed(url: str) -> list[str]:
    """Everything statekit shows of ``url`` without I/O; a refusal must be typed."""
    shown = [mask_password(url)]
    try:
        parsed = BackendURL(url)
        shown += [str(parsed), repr(parsed)]
    except ConfigurationError as refused:
        shown.append(str(refused))
    try:
        shown.append(repr(StatekitSettings(url=url)))  # type: ignore[arg-type]  # text, as the environment gives it
    except ValueError as refused:  # pydantic's ValidationError
        shown.append(str(refused))
    try:
        shown.append(repr(load_settings(url=url)))
    except ConfigurationError as refused:
        shown.append(str(refused))
    try:
        store = connect(url, timeout=0.5, connect_timeout=0.5)
        shown.append(repr(store.backend))
    except ConfigurationError as refused:
        shown.append(str(refused))
    return shown


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(url_forms, passwords)
@example(FORMS[0], LEAKED[0])
@example(FORMS[3], LEAKED[0])
@example(FORMS[7], LEAKED[1])
@example(FORMS[5], LEAKED[2])
def test_parsing_and_refusing_a_url_never_show_its_password(form: str, password: str) -> None:
    key = ("parsed", form)
    if key not in _BASELINES:
        shown = (_shown_when_parsed(form.replace("{pw}", neutral)) for neutral in _NEUTRAL)
        _BASELINES[key] = "\n".join(text for texts in shown for text in texts)
    if _recognisable(password, _BASELINES[key]):
        _assert_hidden(password, *_shown_when_parsed(form.replace("{pw}", password)))


@pytest.mark.parametrize("password", LEAKED)
@pytest.mark.parametrize("form", FORMS)
def test_a_password_that_a_parser_would_split_is_refused_without_it(
    form: str, password: str
) -> None:
    # Before: BackendURL printed it, connect() raised a raw ValueError quoting part of it
    # (a port 'pa'), the cluster URL's ConfigurationError quoted all of it.
    url = form.replace("{pw}", password)
    with pytest.raises(ConfigurationError, match="percent-encode") as refused:
        connect(url)
    _assert_hidden(password, refused.value, mask_password(url))
    assert MASK in str(refused.value)


def test_masking_ends_the_password_at_the_last_at_sign() -> None:
    assert mask_password("redis://:pa#ss/w?rd@h:6379/0") == "redis://:***@h:6379/0"
    assert mask_password("redis://u:p@ss@h/0") == "redis://u:***@h/0"
    assert mask_password("u:secret@host") == "u:***@host"  # not a URL: masked all the same
    assert mask_password("sqlite+aiosqlite:///./a:b@c.db") == "sqlite+aiosqlite:///./a:b@c.db"
    assert mask_password("redis://h/0?key_prefix=a@b") == "redis://h/0?key_prefix=a@b"


def test_an_at_sign_in_a_query_reads_as_the_query_when_no_password_can_be_meant() -> None:
    assert BackendURL("redis://h/0?key_prefix=a@b").query == {"key_prefix": "a@b"}
    with pytest.raises(ConfigurationError, match="%40"):
        BackendURL("redis://h:6379/0?key_prefix=a@b")  # or user 'h', password '6379/0?...'
    assert BackendURL("redis://h:6379/0?key_prefix=a%40b").query == {"key_prefix": "a@b"}


async def test_sql_drivers_read_a_password_with_at_signs_as_statekit_does() -> None:
    # SQLAlchemy ends the user info at the first '@': it took 'ss@db' for the host.
    backend = connect("postgresql+asyncpg://app:p@ss@db:5433/state").backend
    assert isinstance(backend, SQLBackend)
    engine_url = backend.engine.url
    assert (engine_url.password, engine_url.host, engine_url.port) == ("p@ss", "db", 5433)
    await backend.aclose()


async def _shown_when_used(url: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    """The errors and DEBUG log records of operations against a server that is not there."""
    shown: list[str] = []
    with _debug_logs(caplog) as records:
        try:
            store = connect(url, timeout=0.5, connect_timeout=0.5)
        except ConfigurationError as refused:
            return [str(refused)]
        try:
            for operation in (store.describe, lambda: store.state_get("runner:v2:x", "k")):
                try:
                    await operation()
                except Exception as failed:
                    shown.append("".join(traceback.format_exception(failed)))
        finally:
            await store.aclose()
        # The operations failed, so the fault records are among what is searched.
        assert any(r.name in ("statekit.redis", "statekit.sql") for r in records), records
        shown += _logged(records)
    return shown


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(url_forms, passwords)
@example(FORMS[0], "S3cr@t:pw")
@example(FORMS[7], "S3cr@t:pw")
async def test_failing_operations_and_debug_logs_never_show_the_password(
    caplog: pytest.LogCaptureFixture, form: str, password: str
) -> None:
    key = ("used", form)
    if key not in _BASELINES:
        seen = [await _shown_when_used(form.replace("{pw}", pw), caplog) for pw in _NEUTRAL]
        _BASELINES[key] = "\n".join(text for texts in seen for text in texts)
    if _recognisable(password, _BASELINES[key]):
        shown = await _shown_when_used(form.replace("{pw}", password), caplog)
        _assert_hidden(password, *shown)


runner = CliRunner()


def _cli_output(*args: str) -> str:
    result = runner.invoke(app, list(args), env={"STATEKIT_TIMEOUT": "0.5"})
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.output + (result.stderr if result.stderr_bytes is not None else "")


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(url_forms, passwords)
@example(FORMS[0], LEAKED[0])
@example(FORMS[0], "S3cr@t:pw")
def test_the_cli_never_shows_the_password(form: str, password: str) -> None:
    key = ("cli", form)
    if key not in _BASELINES:
        _BASELINES[key] = "\n".join(_cli_streams(form.replace("{pw}", pw)) for pw in _NEUTRAL)
    if _recognisable(password, _BASELINES[key]):
        _assert_hidden(password, _cli_streams(form.replace("{pw}", password)))


def _cli_streams(url: str) -> str:
    get = _cli_output("get", "k", "--url", url, "--scope", "runner", "--runner", "r")
    doctor = _cli_output("doctor", "--url", url, "--timeout", "1")
    # Both fail (no server, or a refused URL), saying so on stderr.
    assert get.startswith("statekit: error: ")
    assert doctor.startswith("statekit: ")
    return get + doctor
