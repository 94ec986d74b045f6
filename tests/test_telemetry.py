"""Spans and metrics of every store operation, on every built-in backend (real servers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from services import open_target, service_url
from telemetry_support import Observed

import statekit
from benchmarks.matrix import MEMORY, POSTGRES, REDIS, SQLITE, Target
from statekit import BackendUnavailableError, StateStore
from statekit.store import StateStore as StoreClass
from statekit.testing import new_identity

SCOPE_KEY = "actor:v2:0123456789abcdef"
SYSTEMS = {"memory": "other", "redis": "redis", "postgres": "postgresql", "sqlite": "sqlite"}


@pytest.fixture(params=[MEMORY, SQLITE, POSTGRES, REDIS], ids=lambda target: target.name)
async def observed_store(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[StateStore, Observed, Target]]:
    target: Target = request.param
    observed = Observed()
    async with open_target(target, request) as backend:
        yield StateStore(backend, telemetry=observed.telemetry), observed, target


async def _set(store: StateStore, key: str = "k", value: object = 1) -> tuple[bool, str | None]:
    return await store.state_set(SCOPE_KEY, key, value, "runner", "binding", "actor")


async def test_every_operation_has_its_client_span(
    observed_store: tuple[StateStore, Observed, Target],
) -> None:
    store, observed, target = observed_store
    await _set(store)
    ident = new_identity()
    await store.apply_updates_from_event(
        ident.event, ident.binding, ident.descriptor, [("actor", "a", 1), ("actor", "b", 2)]
    )
    await store.build_snapshot_from_event(ident.event, ident.binding, ident.descriptor)
    await store.state_get(SCOPE_KEY, "k")
    await store.state_get_versioned(SCOPE_KEY, "k")
    await store.state_list(SCOPE_KEY)
    await store.state_delete(SCOPE_KEY, "k")
    [entry async for entry in store.export()]
    await store.erase(runner_id="runner")
    await store.sweep_expired()
    spans = {span.name: span for span in observed.spans()}
    expected = {"snapshot", "set", "batch set", "get", "versioned get", "list", "delete", "export"}
    assert expected | {"erase", "sweep"} <= set(spans)
    for name, span in spans.items():
        assert span.kind is SpanKind.CLIENT
        assert span.attributes is not None
        assert span.attributes["db.operation.name"] == name
        assert span.attributes["db.system.name"] == SYSTEMS[target.marker]
    assert spans["get"].attributes is not None
    assert spans["get"].attributes["statekit.scope"] == "actor"
    assert spans["batch set"].attributes is not None
    assert spans["batch set"].attributes["statekit.batch.size"] == 2
    durations = {
        point.attributes["db.operation.name"]
        for point in observed.points("db.client.operation.duration")
    }
    assert expected <= durations


async def test_server_attributes_name_the_server(
    observed_store: tuple[StateStore, Observed, Target],
) -> None:
    store, observed, target = observed_store
    await store.state_get(SCOPE_KEY, "k")
    attributes = dict(observed.spans()[0].attributes or {})
    if target.marker in ("redis", "postgres"):
        assert attributes["server.address"] == "127.0.0.1"
        assert isinstance(attributes["server.port"], int)
        assert attributes["db.namespace"]
    else:
        assert "server.address" not in attributes


async def test_refusals_are_counted_by_reason(
    observed_store: tuple[StateStore, Observed, Target],
) -> None:
    store, observed, _ = observed_store
    assert (await _set(store, "bad\x00key"))[0] is False
    assert (await _set(store, "k", float("nan")))[0] is False
    assert (await _set(store, "k", float("nan")))[0] is False
    assert observed.total("statekit.refusals", **{"statekit.refusal.reason": "key"}) == 1
    assert observed.total("statekit.refusals", **{"statekit.refusal.reason": "value"}) == 2
    reasons = [
        dict(span.attributes or {}).get("statekit.refusal.reason") for span in observed.spans()
    ]
    assert reasons == ["key", "value", "value"]


async def test_version_conflicts_are_counted(
    observed_store: tuple[StateStore, Observed, Target],
) -> None:
    store, observed, _ = observed_store
    await _set(store)
    ok, _ = await store.state_set(
        SCOPE_KEY, "k", 2, "runner", "binding", "actor", expected_version=7
    )
    assert ok is False
    assert observed.total("statekit.version_conflicts") == 1
    assert observed.points("statekit.refusals") == []


async def test_spans_nest_under_the_callers_span(
    observed_store: tuple[StateStore, Observed, Target],
) -> None:
    store, observed, _ = observed_store
    with observed.tracer_provider.get_tracer("host").start_as_current_span("run") as run:
        await store.state_get(SCOPE_KEY, "k")
    get = next(span for span in observed.spans() if span.name == "get")
    assert get.parent is not None
    assert get.parent.span_id == run.get_span_context().span_id


async def test_erasure_and_sweep_counts(
    observed_store: tuple[StateStore, Observed, Target],
) -> None:
    store, observed, _ = observed_store
    await _set(store, "a")
    await _set(store, "b")
    assert (await store.erase(runner_id="runner", dry_run=True)).entries == 2
    assert observed.points("statekit.erasure.entries") == []
    await store.erase(runner_id="runner")
    assert observed.total("statekit.erasure.entries") == 2
    assert observed.total("statekit.erasure.scopes") == 1
    await store.sweep_expired()
    assert observed.total("statekit.sweep.entries") == 0


async def test_a_failure_sets_error_type_and_status() -> None:
    observed = Observed()
    url = "redis://:hunter2-secret@127.0.0.1:1/3"
    async with statekit.connect(url, telemetry=observed.telemetry, connect_timeout=0.5) as store:
        with pytest.raises(BackendUnavailableError):
            await store.state_get(SCOPE_KEY, "k")
    (span,) = observed.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "BackendUnavailableError"
    (point,) = observed.points("db.client.operation.duration")
    assert point.attributes["error.type"] == "BackendUnavailableError"


@pytest.mark.redis
async def test_a_pipelined_batch_has_a_span_per_caller_and_its_size() -> None:
    observed = Observed()
    url = service_url("STATEKIT_REDIS_URL")
    async with statekit.connect(
        url, telemetry=observed.telemetry, key_prefix="otel-test:"
    ) as store:
        await store.state_get(SCOPE_KEY, "warm")
        observed.exporter.clear()
        await asyncio.gather(*(_set(store, f"k{i}", i) for i in range(64)))
        await store.clear_all()
    sets = [span for span in observed.spans() if span.name == "set"]
    assert len(sets) == 64
    (point,) = observed.points("statekit.batch.size")
    assert point.attributes["statekit.batch.kind"] == "pipeline"
    assert point.sum >= 64
    assert point.max > 1


@pytest.mark.redis
async def test_connection_places_are_observed() -> None:
    observed = Observed()
    url = service_url("STATEKIT_REDIS_URL")
    async with statekit.connect(
        url, telemetry=observed.telemetry, auto_pipeline=False, pool_size=3, key_prefix="otel:"
    ) as store:
        await asyncio.gather(*(store.state_get(SCOPE_KEY, f"k{i}") for i in range(12)))
        states = {
            point.attributes["db.client.connection.state"]: point.value
            for point in observed.points("db.client.connection.count")
        }
    assert states == {"used": 0, "idle": 3}
    assert observed.points("db.client.connection.wait_time")[0].count > 0


def test_telemetry_false_leaves_the_methods_unwrapped() -> None:
    store = StateStore(statekit.MemoryBackend(), telemetry=False)
    assert "state_set" not in vars(store)
    assert type(store).state_set is StoreClass.state_set


def test_without_an_sdk_nothing_is_wrapped() -> None:
    """The process has no global provider: a default store stays as it is."""
    assert "state_get" not in vars(StateStore(statekit.MemoryBackend()))


def test_the_setting_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    observed = Observed()
    monkeypatch.setenv("STATEKIT_TELEMETRY", "0")
    assert "state_get" not in vars(statekit.connect("memory://"))
    store = statekit.connect("memory://", telemetry=observed.telemetry)
    assert "state_get" in vars(store)


async def test_a_bad_scope_name_is_refused_as_without_telemetry() -> None:
    observed = Observed()
    store = StateStore(statekit.MemoryBackend(), telemetry=observed.telemetry)
    ident = new_identity()
    ok, reason = await store.apply_update_from_event(
        ident.event, ident.binding, ident.descriptor, "bogus", "k", 1
    )
    assert (ok, reason) == (False, "Invalid scope: bogus")
    (span,) = observed.spans()
    attributes = dict(span.attributes or {})
    assert attributes["statekit.refusal.reason"] == "scope"
    assert "statekit.scope" not in attributes


async def test_metrics_without_a_tracer_provider() -> None:
    observed = Observed()
    telemetry = statekit.Telemetry(meter_provider=observed.meter_provider)
    store = StateStore(statekit.MemoryBackend(), telemetry=telemetry)
    assert (await _set(store))[0] is True
    assert (await _set(store, "bad\x00key"))[0] is False
    await store.state_get(SCOPE_KEY, "k")
    [entry async for entry in store.export()]
    operations = {
        point.attributes["db.operation.name"]
        for point in observed.points("db.client.operation.duration")
    }
    assert operations == {"set", "get", "export"}
    assert observed.total("statekit.refusals", **{"statekit.refusal.reason": "key"}) == 1
    assert observed.spans() == []
