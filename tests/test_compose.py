"""docker-compose.yml: parsed with a YAML parser, since Docker does not run here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def mounts(service: dict[str, Any]) -> dict[str, str]:
    pairs = (volume.split(":")[:2] for volume in service["volumes"])
    return {target: source for source, target in pairs}


def test_redis_runs_the_repository_config_with_aof(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    conf = mounts(redis)["/usr/local/etc/redis/redis.conf"]
    assert (ROOT / conf).is_file()
    assert "appendonly yes" in (ROOT / conf).read_text()
    assert redis["command"][:2] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_postgres_15_runs_the_repository_init_script(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:15")
    init = mounts(postgres)["/docker-entrypoint-initdb.d/init.sql"]
    assert (ROOT / init).is_file()
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_ports_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service["ports"]:
            assert port.startswith("127.0.0.1:"), (name, port)
