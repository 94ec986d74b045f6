"""The backend matrix: every target has a contract class, and a missing server is handled."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import services

from benchmarks.matrix import MATRIX, Target
from benchmarks.run import parse_args

CONTRACT_MODULES = sorted(p.stem for p in Path(__file__).parent.glob("test_contract_*.py"))


def test_every_target_has_a_contract_class_and_no_class_names_an_unknown_one() -> None:
    covered: dict[str, list[str]] = {}
    for name in CONTRACT_MODULES:
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            target = cls.__dict__.get("target")
            if isinstance(target, Target):
                covered.setdefault(target.name, []).append(cls_name)
    assert set(covered) == set(MATRIX)


def test_a_target_needs_exactly_one_source_of_its_url() -> None:
    with pytest.raises(ValueError, match="needs one of env_var, server or url"):
        Target("nowhere", "memory")
    with pytest.raises(ValueError, match="needs one of env_var, server or url"):
        Target("twice", "redis", env_var="X_URL", url="redis://")


def test_benchmarks_read_their_backends_and_server_urls_from_the_matrix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STATEKIT_REDIS_URL", "redis://elsewhere:6380/2")
    monkeypatch.delenv("STATEKIT_POSTGRES_URL", raising=False)
    args = parse_args(["--quick"])
    assert args.redis_url == "redis://elsewhere:6380/2"
    assert args.postgres_url == MATRIX["postgres"].default_url


def test_a_target_without_server_gets_its_files_in_the_given_directory(tmp_path: Path) -> None:
    assert MATRIX["sqlite"].url_in(tmp_path) == f"sqlite+aiosqlite:///{tmp_path}/state.db"
    with pytest.raises(ValueError, match="reached through a server"):
        MATRIX["redis"].url_in(tmp_path)


def test_missing_server_url_skips_the_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STATEKIT_NOWHERE_URL", raising=False)
    monkeypatch.setattr(services, "REQUIRE_SERVICES", False)
    with pytest.raises(pytest.skip.Exception, match="STATEKIT_NOWHERE_URL is not set"):
        services.service_url("STATEKIT_NOWHERE_URL")


def test_missing_server_url_fails_when_services_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STATEKIT_NOWHERE_URL", raising=False)
    monkeypatch.setattr(services, "REQUIRE_SERVICES", True)
    with pytest.raises(pytest.fail.Exception, match="and STATEKIT_REQUIRE_SERVICES=1"):
        services.service_url("STATEKIT_NOWHERE_URL")


def test_server_url_comes_from_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATEKIT_NOWHERE_URL", "redis://127.0.0.1:1/0")
    assert services.service_url("STATEKIT_NOWHERE_URL") == "redis://127.0.0.1:1/0"
