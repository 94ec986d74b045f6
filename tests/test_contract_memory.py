"""The contract suite on the in-process memory backend."""

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from services import on, open_target

from benchmarks.matrix import MEMORY
from statekit import MemoryBackend
from statekit.backends.base import StateBackend
from statekit.testing import StateBackendContract

pytestmark = pytest.mark.memory


@on(MEMORY)
class TestMemoryBackend(StateBackendContract):
    @pytest_asyncio.fixture
    async def backend(self, request: pytest.FixtureRequest) -> AsyncIterator[StateBackend]:
        async with open_target(MEMORY, request) as backend:
            yield backend


class _UnversionedMemoryBackend(MemoryBackend):
    """A backend that declares no optional capability, as a minimal third-party one might."""

    capabilities = frozenset()


class TestBackendWithoutCapabilities(StateBackendContract):
    """The suite skips the tests of undeclared capabilities (their refusal: test_refusals)."""

    @pytest_asyncio.fixture
    async def backend(self) -> AsyncIterator[MemoryBackend]:
        backend = _UnversionedMemoryBackend()
        yield backend
        await backend.aclose()
