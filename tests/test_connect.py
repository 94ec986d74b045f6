"""connect(), the scheme registry, BackendURL and settings precedence."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import metadata
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

import statekit
from statekit import (
    BackendURL,
    ConfigurationError,
    MemoryBackend,
    StatekitSettings,
    connect,
    connection,
    environment,
)
from statekit.backends import registry
from statekit.backends.sql import SQLBackend
from statekit.connection import load_settings
from statekit.settings import DEFAULT_URL, STORE_SETTINGS

pytestmark = pytest.mark.memory


class Recorder:
    """A backend stand-in that records how it was built (no storage needed here)."""

    capabilities: frozenset[Any] = frozenset()
    settings_options = frozenset({"timeout", "key_prefix"})

    def __init__(self, url: BackendURL, options: dict[str, Any]) -> None:
        self.url = url
        self.options = options

    @classmethod
    def from_url(cls, url: BackendURL, **options: Any) -> Recorder:
        return cls(url, options)

    async def aclose(self) -> None:
        return None


@pytest.fixture
def recorder_scheme(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(
        registry.BUILTIN_BACKENDS, "recorder", registry.Registration(f"{__name__}:Recorder")
    )
    return "recorder"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No STATEKIT_* settings in the environment and an empty working directory."""
    for name in ("URL", "KEY_PREFIX", "TABLE_NAME", "POOL_SIZE", "TIMEOUT", "CONNECT_TIMEOUT"):
        monkeypatch.delenv(f"STATEKIT_{name}", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def built_with(store: statekit.StateStore) -> Recorder:
    backend = store.backend
    assert isinstance(backend, Recorder)
    return backend


# ---- BackendURL -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://user:s3cret@cache/0?timeout=2", "redis://user:***@cache/0?timeout=2"),
        ("postgresql+asyncpg://app:p@ss@db/state", "postgresql+asyncpg://app:***@db/state"),
        ("rediss+cluster://u:pw@h1:7000,h2:7001", "rediss+cluster://u:***@h1:7000,h2:7001"),
        ("sqlite+aiosqlite:///./statekit.db", "sqlite+aiosqlite:///./statekit.db"),
        ("redis://user@cache/0", "redis://user@cache/0"),
    ],
)
def test_url_never_shows_its_password(url: str, shown: str) -> None:
    parsed = BackendURL(url)
    assert str(parsed) == shown
    assert repr(parsed) == f"BackendURL({shown!r})"
    assert parsed.unmasked() == url


# '[' and ']' may not stand unencoded in a password either: BackendURL refuses them (as it
# does '/', '?' and '#'), and tests/test_secrets.py checks that refusal for every character.
@given(st.text(alphabet=st.characters(blacklist_characters="/?#@[]", codec="ascii"), min_size=4))
def test_no_password_appears_in_repr(password: str) -> None:
    parsed = BackendURL(f"redis://user:{password}@host:6379/0?timeout=1")
    assert str(parsed) == "redis://user:***@host:6379/0?timeout=1"
    assert repr(parsed) == "BackendURL('redis://user:***@host:6379/0?timeout=1')"
    assert parsed.query == {"timeout": "1"}


def test_url_parses_scheme_and_query_once() -> None:
    parsed = BackendURL("PostgreSQL+AsyncPG://h/db?pool_size=3&timeout=1.5")
    assert parsed.scheme == "postgresql+asyncpg"
    assert parsed.query == {"pool_size": "3", "timeout": "1.5"}


@pytest.mark.parametrize("bad", ["", "localhost:6379", "://x", "redis:/x"])
def test_malformed_url_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="Not a backend URL"):
        BackendURL(bad)


def test_configuration_error_messages_mask_passwords() -> None:
    with pytest.raises(ConfigurationError) as caught:
        connect("nosuch://user:hunter2@host/0")
    assert "hunter2" not in str(caught.value)


# ---- registry -------------------------------------------------------------------


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as caught:
        connect("mongodb://localhost/state")
    message = str(caught.value)
    assert "'mongodb'" in message
    for scheme in (
        "memory",
        "redis",
        "rediss",
        "unix",
        "redis+cluster",
        "rediss+cluster",
        "redis+sentinel",
        "rediss+sentinel",
        "postgresql+asyncpg",
        "postgresql",
        "postgres",
        "sqlite+aiosqlite",
        "sqlite",
    ):
        assert f"{scheme}://" in message


def test_registry_maps_every_driver_scheme_to_an_installable_extra() -> None:
    extras = {scheme: entry.extra for scheme, entry in registry.BUILTIN_BACKENDS.items()}
    assert extras.pop("memory") is None
    assert set(extras.values()) == {"redis", "postgres", "sqlite"}
    declared = set(metadata("statekit").get_all("Provides-Extra") or ())
    assert set(extras.values()) <= declared


@pytest.mark.parametrize(
    ("scheme", "target", "extra"),
    [
        ("redis+sentinel", "statekit.backends.redis:RedisBackend", "redis"),
        ("rediss+sentinel", "statekit.backends.redis:RedisBackend", "redis"),
        ("postgresql", "statekit.backends.sql:SQLBackend", "postgres"),
        ("postgres", "statekit.backends.sql:SQLBackend", "postgres"),
        ("sqlite", "statekit.backends.sql:SQLBackend", "sqlite"),
    ],
)
def test_scheme_is_registered(scheme: str, target: str, extra: str) -> None:
    assert registry.BUILTIN_BACKENDS[scheme] == registry.Registration(target, extra)
    registration, factory = registry.resolve(scheme.upper())
    assert registration.target == target
    module, _, name = target.partition(":")
    assert factory is getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u:pw@localhost/db", "postgresql+asyncpg"),
        ("postgres://u:pw@localhost/db", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u:pw@localhost/db", "postgresql+asyncpg"),
        ("sqlite://", "sqlite+aiosqlite"),
        ("sqlite:///./state.db", "sqlite+aiosqlite"),
    ],
)
async def test_plain_sql_schemes_open_the_async_drivers(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, url: str, driver: str
) -> None:
    async with connect(url) as store:
        assert isinstance(store.backend, SQLBackend)
        assert store.backend.engine.url.drivername == driver
    monkeypatch.setenv("STATEKIT_URL", url)
    monkeypatch.setenv("STATEKIT_TABLE_NAME", "from_env")
    async with connect() as store:
        assert isinstance(store.backend, SQLBackend)
        assert store.backend.engine.url.drivername == driver
        assert store.backend.table.name == "from_env"  # its settings_options apply


def test_the_parsed_url_is_handed_to_the_backend(recorder_scheme: str) -> None:
    backend = built_with(connect("recorder://user:pw@h/0?x=1"))
    assert isinstance(backend.url, BackendURL)
    assert backend.url.unmasked() == "recorder://user:pw@h/0?x=1"
    assert BackendURL(backend.url) == backend.url  # a BackendURL is taken as it is


@pytest.mark.parametrize("url", ["memory://", BackendURL("memory://")])
def test_memory_backend_takes_a_url_as_text_or_parsed(url: str | BackendURL) -> None:
    assert isinstance(MemoryBackend.from_url(url), MemoryBackend)
    with pytest.raises(ConfigurationError, match="memory://"):
        MemoryBackend.from_url(BackendURL("redis://h/0"))


def test_importing_statekit_imports_no_driver() -> None:
    code = (
        "import sys, statekit; "
        "print([m for m in ('redis', 'sqlalchemy', 'asyncpg', 'aiosqlite', 'typer', 'rich')"
        " if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_connect_memory_opens_lazily_and_closes() -> None:
    async with connect("memory://") as store:
        assert isinstance(store.backend, MemoryBackend)
        ok, _ = await store.state_set("runner:v2:x", "k", 1, "r", "b", "runner")
        assert ok
        assert await store.state_get("runner:v2:x", "k") == 1
    other = connect("memory://")
    assert await other.state_get("runner:v2:x", "k") is None  # each memory:// is its own
    await other.aclose()


def test_memory_backend_takes_no_options() -> None:
    with pytest.raises(ConfigurationError, match="no options"):
        connect("memory://", timeout=1)


def test_a_backend_module_that_does_not_exist_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ghost = registry.Registration("statekit_ghost_module:Ghost")
    monkeypatch.setitem(registry.BUILTIN_BACKENDS, "ghost", ghost)
    with pytest.raises(ConfigurationError, match=r"'statekit_ghost_module'.*not installed"):
        connect("ghost://x")


def test_a_missing_driver_inside_a_backend_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "needs_driver_backend.py").write_text("import statekit_absent_driver\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    needy = registry.Registration("needs_driver_backend:B", "redis")
    monkeypatch.setitem(registry.BUILTIN_BACKENDS, "needy", needy)
    with pytest.raises(ConfigurationError) as caught:
        connect("needy://x")
    assert "'statekit_absent_driver'" in str(caught.value)
    assert "pip install 'statekit[redis]'" in str(caught.value)


ENTRY_POINT_SCRIPT = textwrap.dedent(
    """
    import json, warnings
    import statekit
    from statekit.backends import registry
    result = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = statekit.connect("tiny://anywhere?x=1", flavour="mint")
        backend = store.backend
        result["tiny"] = [type(backend).__name__, str(backend.url), backend.options]
        result["parsed"] = type(backend.url).__name__
        result["memory"] = type(statekit.connect("memory://").backend).__name__
        result["warnings"] = [str(w.message) for w in caught]
    try:
        statekit.connect("nope://x")
    except statekit.ConfigurationError as exc:
        result["unknown"] = str(exc)
    print(json.dumps(result))
    """
)

TINY_BACKEND = textwrap.dedent(
    """
    class TinyBackend:
        capabilities = frozenset()
        settings_options = frozenset({"timeout"})

        def __init__(self, url, options):
            self.url, self.options = url, options

        @classmethod
        def from_url(cls, url, **options):
            return cls(url, options)
    """
)


def test_installed_package_adds_a_scheme_but_cannot_take_a_built_in_one(tmp_path: Path) -> None:
    (tmp_path / "tiny_backend.py").write_text(TINY_BACKEND)
    dist = tmp_path / "tiny_backend-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-backend\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[statekit.backends]\ntiny = tiny_backend:TinyBackend\nmemory = tiny_backend:TinyBackend\n"
    )
    env = {"PYTHONPATH": str(tmp_path), "STATEKIT_TIMEOUT": "7", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", ENTRY_POINT_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    result = json.loads(out.stdout)
    # Settings go to a plugin only for the options it declares; keywords always.
    assert result["tiny"] == [
        "TinyBackend",
        "tiny://anywhere?x=1",
        {"timeout": 7.0, "flavour": "mint"},
    ]
    assert result["parsed"] == "BackendURL"
    assert result["memory"] == "MemoryBackend"  # built-ins win
    assert any("memory://" in w and "built-in" in w for w in result["warnings"])
    assert "tiny://" in result["unknown"]


# ---- settings -------------------------------------------------------------------


def test_default_url_is_the_embedded_sqlite_file(clean_env: Path) -> None:
    settings = load_settings()
    assert settings.url == BackendURL(DEFAULT_URL)
    assert settings.url.unmasked() == DEFAULT_URL == "sqlite+aiosqlite:///./statekit.db"
    assert settings.backend_options() == {}


def test_settings_never_show_the_url_password(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # repr(StatekitSettings(url=...)) used to print the URL as given, password included.
    url = "redis://user:s3cr3t-pw@cache:6379/0"
    monkeypatch.setenv("STATEKIT_URL", url)
    for settings in (StatekitSettings(url=url), load_settings()):  # type: ignore[arg-type]  # text, as the environment gives it
        shown = [repr(settings), str(settings), settings.model_dump(), settings.model_dump_json()]
        assert all("s3cr3t-pw" not in str(text) for text in shown)
        assert "redis://user:***@cache:6379/0" in repr(settings)
        assert settings.url.unmasked() == url
    assert load_settings(url=BackendURL(url)).url == BackendURL(url)


def test_a_refused_url_setting_never_quotes_its_password(clean_env: Path) -> None:
    for bad in ("redis://:pa#s3cr3t-pw@h:6379/0", "notaurl:s3cr3t-pw@h"):
        with pytest.raises(ConfigurationError, match="STATEKIT_URL") as refused:
            load_settings(url=bad)
        assert "s3cr3t-pw" not in str(refused.value)
        with pytest.raises(ValueError, match="backend URL") as invalid:
            StatekitSettings(url=bad)  # type: ignore[arg-type]  # text, as the environment gives it
        assert "s3cr3t-pw" not in str(invalid.value)


def test_settings_precedence_keyword_env_dotenv_default(
    clean_env: Path, recorder_scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATEKIT_URL", "recorder://from-env")
    assert built_with(connect()).options == {}  # default: the backend's own

    (clean_env / ".env").write_text("STATEKIT_TIMEOUT=3\nSTATEKIT_KEY_PREFIX=dotenv:\n")
    assert built_with(connect()).options == {"timeout": 3.0, "key_prefix": "dotenv:"}

    monkeypatch.setenv("STATEKIT_TIMEOUT", "2")
    assert built_with(connect()).options == {"timeout": 2.0, "key_prefix": "dotenv:"}

    store = connect(timeout=1, key_prefix="kw:")
    assert built_with(store).options == {"timeout": 1, "key_prefix": "kw:"}
    assert built_with(store).url == BackendURL("recorder://from-env")


def test_url_query_beats_settings_and_keyword_beats_url(
    clean_env: Path, recorder_scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATEKIT_TIMEOUT", "2")
    monkeypatch.setenv("STATEKIT_KEY_PREFIX", "env:")
    store = connect("recorder://h?timeout=9")
    assert built_with(store).options == {"key_prefix": "env:"}  # the URL's timeout stands
    store = connect("recorder://h?timeout=9", timeout=1)
    assert built_with(store).options == {"key_prefix": "env:", "timeout": 1}


def test_each_backend_gets_only_the_settings_it_takes(
    clean_env: Path, recorder_scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATEKIT_TABLE_NAME", "state_rows")
    monkeypatch.setenv("STATEKIT_POOL_SIZE", "4")
    monkeypatch.setenv("STATEKIT_TIMEOUT", "2")
    assert built_with(connect("recorder://h")).options == {"timeout": 2.0}
    assert isinstance(connect("memory://").backend, MemoryBackend)  # takes none


@pytest.mark.parametrize(
    ("scheme", "expected"),
    [
        ("memory", set()),
        ("sqlite", {"table_name", "pool_size", "timeout", "connect_timeout"}),
        ("redis", {"key_prefix", "pool_size", "timeout", "connect_timeout"}),
    ],
)
def test_every_built_in_class_declares_the_settings_it_takes(
    scheme: str, expected: set[str]
) -> None:
    _, factory = registry.resolve(scheme)
    assert "settings_options" in vars(factory)  # its own declaration, read like a plugin's
    assert factory.settings_options == expected
    assert expected <= set(StatekitSettings.model_fields) - {"url"}


def test_every_setting_but_the_url_and_the_stores_own_is_a_backend_option(
    clean_env: Path,
) -> None:
    values: dict[str, Any] = {"key_prefix": "p:", "table_name": "t", "pool_size": 2, "timeout": 1.5}
    settings = StatekitSettings(url="memory://", connect_timeout=0.5, **values)  # type: ignore[arg-type]  # text, as the environment gives it
    assert settings.backend_options() == {**values, "connect_timeout": 0.5}
    assert set(settings.backend_options()) == (
        set(StatekitSettings.model_fields) - {"url"} - STORE_SETTINGS
    )


def test_invalid_setting_names_the_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATEKIT_POOL_SIZE", "zero")
    with pytest.raises(ConfigurationError, match="STATEKIT_POOL_SIZE"):
        connect("memory://")


def test_explicit_settings_object_skips_the_environment(
    clean_env: Path, recorder_scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATEKIT_TIMEOUT", "2")
    # pydantic-settings takes `_env_file` at init; the signature type checkers see has fields only.
    settings = StatekitSettings(url="recorder://explicit", timeout=5, _env_file=None)  # type: ignore[call-arg,arg-type]
    store = connect(settings=settings)
    assert built_with(store).url == BackendURL("recorder://explicit")
    assert built_with(store).options == {"timeout": 5.0}


# ---- nothing configured: the defaults without pydantic-settings ----------------------


@pytest.fixture
def unconfigured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No variable named STATEKIT_... in any case, no .env: nothing to configure from."""
    for name in [n for n in os.environ if n.upper().startswith("STATEKIT_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_defaults_are_what_the_settings_give_with_nothing_configured(
    unconfigured: Path,
) -> None:
    assert not environment.configured()
    settings = StatekitSettings()
    assert settings.url == BackendURL(environment.DEFAULT_URL)
    assert settings.backend_options() == {}
    assert settings.store_options() == environment.default_store_options()


@given(
    name=st.text(st.characters(codec="ascii", exclude_characters="=\0"), min_size=1),
    prefixed=st.booleans(),
)
def test_any_variable_named_statekit_in_any_case_counts_as_configuration(
    name: str, prefixed: bool
) -> None:
    variable = f"{'sTaTeKiT_' if prefixed else 'X'}{name}"
    kept = {n: v for n, v in os.environ.items() if not n.upper().startswith("STATEKIT_")}
    with mock.patch.dict(os.environ, kept, clear=True):
        assert not environment.configured() or Path(environment.ENV_FILE).is_file()
        os.environ[variable] = "1"
        assert environment.configured() or not prefixed


def test_a_dotenv_file_counts_as_configuration_and_is_read(
    unconfigured: Path, recorder_scheme: str
) -> None:
    (unconfigured / ".env").write_text("STATEKIT_URL=recorder://from-dotenv\n")
    assert environment.configured()
    assert built_with(connect()).url == BackendURL("recorder://from-dotenv")


def test_a_lower_case_variable_still_configures_the_store(
    unconfigured: Path, recorder_scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("statekit_url", "recorder://lower")
    assert built_with(connect()).url == BackendURL("recorder://lower")


def test_connect_with_nothing_configured_opens_what_the_settings_would(
    unconfigured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, ...]] = []

    def record_backend(target: Any, options: Any, settings_options: Any) -> str:
        calls.append((target, options, settings_options))
        return "backend"

    def record_store(backend: str, **options: Any) -> None:
        calls.append((backend, options))

    monkeypatch.setattr(connection, "open_backend", record_backend)
    monkeypatch.setattr(connection, "StateStore", record_store)
    connect(timeout=2)
    fast = list(calls)
    calls.clear()
    monkeypatch.setenv("STATEKIT_NOT_A_SETTING", "1")  # ignored, but read through the settings
    connect(timeout=2)
    assert fast == calls
    assert fast[0] == (BackendURL(environment.DEFAULT_URL), {"timeout": 2}, {})


def test_importing_statekit_imports_neither_settings_nor_store_nor_telemetry() -> None:
    code = (
        "import sys, statekit; print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'pydantic_settings', 'opentelemetry') or m in "
        "('statekit.settings', 'statekit.store', 'statekit.connection')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_is_its_modules_object() -> None:
    for name in statekit.__all__:
        value = getattr(statekit, name)
        if name != "__version__":
            module = importlib.import_module(statekit._EXPORTS[name])
            assert value is getattr(module, name), name
    assert set(statekit.__all__) <= set(dir(statekit))
    with pytest.raises(AttributeError, match="no_such_name"):
        statekit.no_such_name  # type: ignore[attr-defined]  # noqa: B018
