"""connect(), the scheme registry, BackendURL and settings precedence."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import statekit
from statekit import BackendURL, ConfigurationError, MemoryBackend, StatekitSettings, connect
from statekit.backends import registry
from statekit.connection import load_settings
from statekit.settings import DEFAULT_URL

pytestmark = pytest.mark.memory


class Recorder:
    """A backend stand-in that records how it was built (no storage needed here)."""

    capabilities: frozenset[Any] = frozenset()
    settings_options = frozenset({"timeout", "key_prefix"})

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self.url = url
        self.options = options

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Recorder:
        return cls(url, options)

    async def aclose(self) -> None:
        return None


@pytest.fixture
def recorder_scheme(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(registry.BUILTIN_BACKENDS, "recorder", f"{__name__}:Recorder")
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


@given(st.text(alphabet=st.characters(blacklist_characters="/?#@", codec="ascii"), min_size=4))
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
        "postgresql+asyncpg",
        "sqlite+aiosqlite",
    ):
        assert f"{scheme}://" in message


def test_registry_maps_every_driver_scheme_to_an_extra() -> None:
    assert set(registry.DRIVER_EXTRAS) == set(registry.BUILTIN_BACKENDS) - {"memory"}
    assert set(registry.DRIVER_EXTRAS.values()) == {"redis", "postgres", "sqlite"}


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
    monkeypatch.setitem(registry.BUILTIN_BACKENDS, "ghost", "statekit_ghost_module:Ghost")
    with pytest.raises(ConfigurationError, match=r"'statekit_ghost_module'.*not installed"):
        connect("ghost://x")


def test_a_missing_driver_inside_a_backend_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "needs_driver_backend.py").write_text("import statekit_absent_driver\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry.BUILTIN_BACKENDS, "needy", "needs_driver_backend:B")
    monkeypatch.setitem(registry.DRIVER_EXTRAS, "needy", "redis")
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
        result["tiny"] = [type(store.backend).__name__, store.backend.url, store.backend.options]
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
    assert result["memory"] == "MemoryBackend"  # built-ins win
    assert any("memory://" in w and "built-in" in w for w in result["warnings"])
    assert "tiny://" in result["unknown"]


# ---- settings -------------------------------------------------------------------


def test_default_url_is_the_embedded_sqlite_file(clean_env: Path) -> None:
    settings = load_settings()
    assert settings.url == DEFAULT_URL == "sqlite+aiosqlite:///./statekit.db"
    assert settings.backend_options() == {}


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
    assert built_with(store).url == "recorder://from-env"


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
    assert registry.SETTINGS_OPTIONS["statekit.backends.redis:RedisBackend"] == {
        "key_prefix",
        "pool_size",
        "timeout",
        "connect_timeout",
    }
    assert registry.SETTINGS_OPTIONS["statekit.backends.sql:SQLBackend"] == {
        "table_name",
        "pool_size",
        "timeout",
        "connect_timeout",
    }


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
    settings = StatekitSettings(url="recorder://explicit", timeout=5, _env_file=None)
    store = connect(settings=settings)
    assert built_with(store).url == "recorder://explicit"
    assert built_with(store).options == {"timeout": 5.0}
