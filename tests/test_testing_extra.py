"""``statekit.testing`` as a backend author meets it: the extra it needs, and a first run."""

from __future__ import annotations

import importlib
import sys

import pytest


def _forget_testing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next import run the package again; the originals come back after the test."""
    for name in [
        n for n in sys.modules if n == "statekit.testing" or n.startswith("statekit.testing.")
    ]:
        monkeypatch.delitem(sys.modules, name)


@pytest.mark.parametrize(
    ("module", "distribution"),
    [("hypothesis", "hypothesis"), ("pytest_asyncio", "pytest-asyncio")],
)
def test_missing_test_tool_is_named_with_the_extra_that_installs_it(
    monkeypatch: pytest.MonkeyPatch, module: str, distribution: str
) -> None:
    _forget_testing_package(monkeypatch)
    monkeypatch.setitem(sys.modules, module, None)  # what an absent package looks like
    with pytest.raises(ImportError) as raised:
        importlib.import_module("statekit.testing")
    assert str(raised.value) == (
        f"statekit.testing needs {distribution}: pip install 'statekit[testing]'"
    )
    assert raised.value.name == module


def test_every_missing_tool_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    _forget_testing_package(monkeypatch)
    monkeypatch.setitem(sys.modules, "pytest_asyncio", None)
    monkeypatch.setitem(sys.modules, "hypothesis", None)
    with pytest.raises(ImportError, match=r"needs pytest-asyncio, hypothesis: pip install"):
        importlib.import_module("statekit.testing")


THIRD_PARTY_TEST = """
import pytest_asyncio

from statekit import MemoryBackend
from statekit.testing import StateBackendContract


class DictBackend(MemoryBackend):
    \"\"\"Stands for a third-party backend.\"\"\"


class TestDictBackend(StateBackendContract):
    @pytest_asyncio.fixture
    async def backend(self):
        backend = DictBackend()
        yield backend
        await backend.clear()
        await backend.aclose()
"""


@pytest.mark.slow
def test_a_third_party_backend_passes_the_suite_with_default_pytest_settings(
    pytester: pytest.Pytester,
) -> None:
    # No asyncio_mode setting: pytest-asyncio's default (strict) mode, as in a new project.
    pytester.makepyfile(test_dict_backend=THIRD_PARTY_TEST)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0, result.stdout.str()
    assert outcomes.get("error", 0) == 0, result.stdout.str()
    assert outcomes["passed"] > 50
