"""``statekit.testing`` names the extra to install when its test tools are missing."""

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
