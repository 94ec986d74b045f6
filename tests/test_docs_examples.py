"""Every Python and shell example of README.md and docs/**/*.md runs here, as shown.

Each fenced block is one test, its id ``file:line`` (the line of the opening fence). The
conventions the pages follow:

* ```` ```python ```` blocks are complete scripts: each is run by this interpreter in a new
  temporary working directory and must exit 0. A block whose first line is
  ``# test_<name>.py`` is a test module instead: it is saved under that name and run with
  ``python -m pytest`` there, with ``asyncio_mode=auto`` (the setting the
  "Writing a backend" page tells backend authors to use).
* ```` ```sh ```` and ```` ```bash ```` blocks run through ``bash -euo pipefail`` in a new
  temporary working directory, with this interpreter's ``bin`` first on ``PATH`` (so
  ``statekit`` and ``python`` are the installed ones).
* ```` ```console ```` blocks are transcripts: every line starting with ``$ `` is a command
  (run like ``sh``, in order, in one temporary directory) and the lines up to the next
  command are its expected stdout, where ``...`` matches any text.
* Every example runs with no ``STATEKIT_*`` variable set, so the embedded default (the
  SQLite file ``./statekit.db`` in the temporary directory) is what ``statekit.connect()``
  and the ``statekit`` command open.
* Blocks in other languages (``toml``, ``sql``, ``text``, ``yaml``) are not examples and
  are not run; a fence without a language fails, so nothing escapes by accident.
* A block that must not run (installing from PyPI, ``docker compose``, the test suite
  itself) has ``<!-- not run: reason -->`` on the line right before its fence; a skip
  without a reason fails.

Servers: examples name them by the URLs ``docker compose up`` serves,
``redis://localhost:6379/0`` and
``postgresql+asyncpg://postgres:statekit@localhost:5432/statekit``, and a Sentinel as
``redis+sentinel://127.0.0.1:26379/mymaster/0``. Here those texts are rewritten to
``STATEKIT_REDIS_URL`` (database 13 in CI), ``STATEKIT_POSTGRES_URL`` and the Sentinel this
test session starts on free ports (fixture ``redis_sentinel_url``), so examples never
touch real data: a Redis example gets a private key prefix (as
``STATEKIT_KEY_PREFIX``, and in place of the prefix ``myapp:`` the pages use), a
PostgreSQL one a private schema (``?schema=...`` on its URL), both removed afterwards.
Without the variable such a block is skipped, or fails under
``STATEKIT_REQUIRE_SERVICES=1`` (CI). A run block naming any other server URL fails.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from services import service_url

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUN_LANGUAGES = {"python", "sh", "bash", "console"}
OTHER_LANGUAGES = {"toml", "sql", "text", "yaml", "json", "ini"}
REDIS_URL = "redis://localhost:6379/0"
POSTGRES_URL = "postgresql+asyncpg://postgres:statekit@localhost:5432/statekit"
SENTINEL_URL = "redis+sentinel://127.0.0.1:26379/mymaster/0"
DOC_PREFIX = "myapp:"
# A URL that could reach a server on this machine (a name like `cache:6379` resolves nowhere).
LOCAL_URL = re.compile(r"\b[\w+]+://(?:[^/@\s]*@)?(?:localhost|127\.|\[::1\]|/)[^\s'\"]*")
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w+-]*)\s*$")
SKIP = re.compile(r"^\s*<!--\s*not run\b:?(?P<reason>.*?)-->\s*$")
TIMEOUT = 180


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text, and why it is not run."""

    page: Path
    line: int
    lang: str
    text: str
    skip_reason: str | None

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def parse_blocks(page: Path) -> Iterator[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        indent, start = len(match["indent"]), index
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index][indent:])
            index += 1
        if index == len(lines):
            raise ValueError(f"{page.name}:{start + 1}: the fence opened here is never closed")
        skip = SKIP.match(lines[start - 1]) if start else None
        reason = skip["reason"].strip() if skip else None
        yield Block(page, start + 1, match["lang"], "\n".join(body) + "\n", reason)
        index += 1


BLOCKS = [block for page in PAGES for block in parse_blocks(page)]
EXAMPLES = [block for block in BLOCKS if block.lang in RUN_LANGUAGES]


def _param(block: Block) -> object:
    marks = [pytest.mark.redis] if REDIS_URL in block.text else []
    if SENTINEL_URL in block.text:
        marks = [pytest.mark.redis, pytest.mark.slow]
    marks += [pytest.mark.postgres] if POSTGRES_URL in block.text else []
    return pytest.param(block, id=block.id, marks=marks)


def test_the_pages_have_examples() -> None:
    # Guards the parser: a change that finds no block would make every other test vacuous.
    assert len(EXAMPLES) >= 20
    assert any(block.page.name == "README.md" and block.lang == "python" for block in EXAMPLES)


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_every_block_names_a_known_language(block: Block) -> None:
    assert block.lang in RUN_LANGUAGES | OTHER_LANGUAGES, (
        f"{block.id}: fence language {block.lang!r}; use one of "
        f"{sorted(RUN_LANGUAGES | OTHER_LANGUAGES)}"
    )


@pytest.mark.parametrize("block", [_param(block) for block in EXAMPLES])
def test_example_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if block.skip_reason is not None:
        assert block.skip_reason, f"{block.id}: '<!-- not run: ... -->' needs a reason"
        pytest.skip(f"not run: {block.skip_reason}")
    local = {url for url in LOCAL_URL.findall(block.text) if not url.startswith("sqlite")}
    known = (REDIS_URL, POSTGRES_URL, SENTINEL_URL)
    foreign = {url for url in local if not url.startswith(known)}
    assert not foreign, f"{block.id}: name local servers only as one of {known}"
    env = {name: value for name, value in os.environ.items() if not name.startswith("STATEKIT_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    text = block.text
    cleanups: list[Callable[[], None]] = []
    private = f"docs{uuid.uuid4().hex[:12]}"
    if REDIS_URL in text:
        redis_url = service_url("STATEKIT_REDIS_URL")
        prefix = f"statekit-{private}:"
        text = text.replace(REDIS_URL, redis_url).replace(DOC_PREFIX, prefix)
        env["STATEKIT_KEY_PREFIX"] = prefix
        cleanups.append(lambda: _drop_redis_prefix(redis_url, prefix))
    if SENTINEL_URL in text:
        # The session's own primary, replica and Sentinel: nothing else uses them.
        text = text.replace(SENTINEL_URL, request.getfixturevalue("redis_sentinel_url"))
    if POSTGRES_URL in text:
        assert "schema=" not in text, f"{block.id}: the runner chooses the schema"
        postgres_url = service_url("STATEKIT_POSTGRES_URL")
        sep = "&" if "?" in postgres_url else "?"
        text = text.replace(f"{POSTGRES_URL}?", f"{postgres_url}{sep}schema={private}&")
        text = text.replace(POSTGRES_URL, f"{postgres_url}{sep}schema={private}")
        cleanups.append(lambda: asyncio.run(_drop_schema(postgres_url, private)))
    try:
        _run(block, text, tmp_path, env)
    finally:
        for cleanup in cleanups:
            cleanup()


def _run(block: Block, text: str, cwd: Path, env: dict[str, str]) -> None:
    if block.lang == "console":
        for command, expected in _transcript(text):
            result = _bash(command, cwd, env)
            _check(block, result, command)
            if expected.strip():
                assert _matches(expected, result.stdout), (
                    f"{block.id}: `{command}` printed\n{result.stdout}\nexpected\n{expected}"
                )
        return
    if block.lang == "python":
        _run_python(block, text, cwd, env)
        return
    _check(block, _bash(text, cwd, env), text)


def _run_python(block: Block, text: str, cwd: Path, env: dict[str, str]) -> None:
    module = re.fullmatch(r"#\s*(test_\w+\.py)\b.*", text.split("\n", 1)[0])
    name = module[1] if module else "example.py"
    (cwd / name).write_text(text, encoding="utf-8")
    argv = [sys.executable, name]
    if module:
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name]
        argv += ["-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"]
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    _check(block, result, " ".join(argv))


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _check(block: Block, result: subprocess.CompletedProcess[str], what: str) -> None:
    assert result.returncode == 0, (
        f"{block.id}: exit {result.returncode} from\n{what}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


def _transcript(text: str) -> Iterator[tuple[str, str]]:
    """``(command, expected output)`` pairs of a console block."""
    command: str | None = None
    output: list[str] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            if command is not None:
                yield command, "\n".join(output)
            command, output = line[2:], []
        elif command is not None:
            output.append(line)
    if command is not None:
        yield command, "\n".join(output)


def _matches(expected: str, actual: str) -> bool:
    """``actual`` equals ``expected`` line by line (trailing spaces aside), ``...`` any text."""
    lines = [line.rstrip() for line in expected.strip("\n").splitlines()]
    pattern = "\n".join(".*".join(map(re.escape, line.split("..."))) for line in lines)
    got = "\n".join(line.rstrip() for line in actual.strip("\n").splitlines())
    return re.fullmatch(pattern, got, flags=re.DOTALL) is not None


def _drop_redis_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.unlink(*keys)
    finally:
        client.close()


async def _drop_schema(url: str, schema: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url.replace("+asyncpg", "", 1))
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


def test_the_error_tree_drawn_in_errors_py_is_the_real_one() -> None:
    import statekit.errors as errors

    drawn: dict[str, str] = {}
    parents: list[tuple[int, str]] = []  # (column of the name, name) along the current path
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^(?P<lead>[\s│├└─]*)(?P<name>[A-Z]\w+Error)\b", line)
        if not match:
            continue
        column, name = len(match["lead"]), match["name"]
        while parents and parents[-1][0] >= column:
            parents.pop()
        if parents:
            drawn[name] = parents[-1][1]
        parents.append((column, name))
    real = {
        name: next(b.__name__ for b in cls.__bases__ if issubclass(b, errors.StatekitError))
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.StatekitError)
        if cls is not errors.StatekitError
    }
    assert drawn == real
