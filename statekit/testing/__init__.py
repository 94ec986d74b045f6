"""The contract suite every statekit backend must pass, for backend authors.

Subclass :class:`StateBackendContract` in a test module and give it a ``backend``
fixture that yields a fresh, empty backend (and closes it afterwards)::

    import pytest_asyncio
    from statekit.testing import StateBackendContract

    class TestMyBackend(StateBackendContract):
        @pytest_asyncio.fixture
        async def backend(self):
            backend = MyBackend(...)
            yield backend
            await backend.clear()
            await backend.aclose()

Tests of optional features run only where the backend declares the matching
:class:`statekit.Capability`; pytest-asyncio and hypothesis must be installed.
:class:`IsolationContract` (no call reaches outside its scope key) and
:class:`FuzzContract` (hostile input against a model) are part of it.
"""

from statekit.testing.contract import StateBackendContract
from statekit.testing.fuzz import FuzzContract
from statekit.testing.identities import Identity, new_identity
from statekit.testing.isolation import IsolationContract

__all__ = ["FuzzContract", "Identity", "IsolationContract", "StateBackendContract", "new_identity"]
