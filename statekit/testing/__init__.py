"""The contract suite every statekit backend must pass, for backend authors.

Subclass :class:`StateBackendContract` in a test module and give it a ``backend``
fixture that yields a fresh, empty backend (and closes it afterwards)::

    import contextlib

    import pytest_asyncio
    from statekit import StoreClosedError
    from statekit.testing import StateBackendContract

    class TestMyBackend(StateBackendContract):
        @pytest_asyncio.fixture
        async def backend(self):
            backend = MyBackend(...)
            yield backend
            with contextlib.suppress(StoreClosedError):  # a test may have closed it
                await backend.clear()
            await backend.aclose()

Tests of optional features run only where the backend declares the matching
:class:`statekit.Capability`; those of expiry and erasure are the mixins
:class:`ExpiryContract` and :class:`ErasureContract`, added next to
:class:`StateBackendContract`. :class:`IsolationContract` (no call reaches outside its
scope key) and :class:`FuzzContract` (hostile input against a model) are part of it.

The suite holds what a backend can get wrong; refusals the store makes before any
backend call are statekit's own tests. It needs pytest, pytest-asyncio and hypothesis:
``pip install 'statekit[testing]'`` (importing this package without them raises an
:class:`ImportError` that says so). The suite runs under pytest-asyncio's default strict
mode as well as ``asyncio_mode = "auto"``: no setting is needed.
"""

import importlib.util

# Module name -> distribution name, checked before the suite's modules import them.
_NEEDED = {"pytest": "pytest", "pytest_asyncio": "pytest-asyncio", "hypothesis": "hypothesis"}
_missing = [module for module in _NEEDED if importlib.util.find_spec(module) is None]
if _missing:
    raise ImportError(
        f"statekit.testing needs {', '.join(_NEEDED[m] for m in _missing)}: "
        "pip install 'statekit[testing]'",
        name=_missing[0],
    )

from statekit.testing.clocks import FakeClock  # noqa: E402
from statekit.testing.contract import StateBackendContract  # noqa: E402
from statekit.testing.erasure import ErasureContract  # noqa: E402
from statekit.testing.expiry import ExpiryContract  # noqa: E402
from statekit.testing.fuzz import FuzzContract  # noqa: E402
from statekit.testing.identities import Identity, new_identity  # noqa: E402
from statekit.testing.isolation import IsolationContract  # noqa: E402

__all__ = [
    "ErasureContract",
    "ExpiryContract",
    "FakeClock",
    "FuzzContract",
    "Identity",
    "IsolationContract",
    "StateBackendContract",
    "new_identity",
]
