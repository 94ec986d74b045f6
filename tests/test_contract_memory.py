"""The contract suite on the in-process memory backend."""

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import pytest_asyncio
from services import on, open_target

from benchmarks.matrix import MEMORY
from statekit import MemoryBackend
from statekit.backends.base import StateBackend
from statekit.testing import ErasureContract, ExpiryContract, StateBackendContract

pytestmark = pytest.mark.memory


@on(MEMORY)
class TestMemoryBackend(StateBackendContract, ExpiryContract, ErasureContract):
    @pytest_asyncio.fixture
    async def backend(self, request: pytest.FixtureRequest) -> AsyncIterator[StateBackend]:
        async with open_target(MEMORY, request) as backend:
            yield backend


class _UnversionedMemoryBackend(MemoryBackend):
    """A backend that declares no optional capability, as a minimal third-party one might."""

    capabilities = frozenset()


class TestBackendWithoutCapabilities(StateBackendContract, ExpiryContract, ErasureContract):
    """The suite skips the tests of undeclared capabilities (their refusal: test_refusals)."""

    @pytest_asyncio.fixture
    async def backend(self) -> AsyncIterator[MemoryBackend]:
        backend = _UnversionedMemoryBackend()
        yield backend
        await backend.aclose()


class _ServerClock:
    """The memory backend seen as a server that keeps its own time (as Redis does): no
    ``clock`` attribute, so the expiry contract runs in real time."""

    def __init__(self) -> None:
        self._backend = MemoryBackend()

    def __getattr__(self, name: str) -> Any:
        if name == "clock":
            raise AttributeError(name)
        return getattr(self._backend, name)


class TestExpiryInRealTime(ExpiryContract, ErasureContract):
    """The real-time side of the expiry contract (and of erasure's expired scopes), which
    no other memory class reaches."""

    @pytest_asyncio.fixture
    async def backend(self) -> AsyncIterator[StateBackend]:
        backend = cast(StateBackend, _ServerClock())
        yield backend
        await backend.aclose()
