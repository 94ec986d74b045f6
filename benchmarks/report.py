"""The printed tables, the targets of the benchmark issue, and the JSON results document."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from benchmarks.harness import Figure
from benchmarks.suite import BackendResult, Comparison
from benchmarks.workload import FAMILIES

#: Peers' labels, as the targets name them.
LANGGRAPH_PG = "LangGraph AsyncPostgresStore"
LANGGRAPH_SQLITE_WAL = "LangGraph AsyncSqliteStore (WAL)"
DISK_STORE = "py-key-value DiskStore"


@dataclass(frozen=True)
class Target:
    """statekit's throughput must be at least ``minimum`` x the baseline's."""

    backend: str
    op: str
    in_flight: int
    baseline: str
    minimum: float

    def describe(self) -> str:
        return (
            f"{self.backend} {self.op} x{self.in_flight}: statekit >= {self.minimum:g}x "
            f"{self.baseline}"
        )


def _targets() -> tuple[Target, ...]:
    """The benchmark issue's targets; the SQL ones are checked at 1 and at 64 in flight."""
    raw_redis, raw_pg, original = "raw redis-py", "raw asyncpg", "original"
    sql = (
        ("postgres", "set", original, 3.0),
        ("postgres", "snapshot", original, 3.0),
        ("postgres", "get", original, 1.5),
        ("postgres", "set", raw_pg, 0.6),
        ("sqlite", "set", original, 2.0),
        ("sqlite", "snapshot", original, 2.0),
    )
    # Issue 16: coalescing on SQL, measured against the peers.
    at_64 = (
        ("postgres", "set", LANGGRAPH_PG, 1.5),
        ("postgres", "get", LANGGRAPH_PG, 1.5),
        ("postgres", "set", raw_pg, 2.0),
        ("postgres", "get", raw_pg, 2.0),
        ("sqlite", "set", LANGGRAPH_SQLITE_WAL, 1.5),
        ("sqlite", "get", LANGGRAPH_SQLITE_WAL, 1.5),
        ("redis", "set", raw_redis, 2.5),
    )
    return (
        Target("redis", "set", 1, raw_redis, 0.8),
        Target("redis", "get", 1, raw_redis, 0.8),
        Target("redis", "snapshot", 1, raw_redis, 0.8),
        Target("redis", "set", 64, raw_redis, 2.0),
        Target("redis", "get", 64, raw_redis, 2.0),
        *(Target(b, op, n, base, minimum) for b, op, base, minimum in sql for n in (1, 64)),
        *(Target(b, op, 64, base, minimum) for b, op, base, minimum in at_64),
        Target("sqlite", "get", 1, DISK_STORE, 0.8),
    )


TARGETS = _targets()


def evaluate_targets(results: Iterable[BackendResult]) -> list[dict[str, Any]]:
    """Each target that this run measured, with the ratio reached (a target whose baseline
    was not measured, such as a peer under ``--no-peers``, is left out)."""
    found = {(r.name, c.op, c.in_flight): c for r in results for c in r.main}
    checked = []
    for target in TARGETS:
        comparison = found.get((target.backend, target.op, target.in_flight))
        if comparison is None or target.baseline not in comparison.figures:
            continue
        reached = comparison.ratio("statekit", target.baseline)["ops_per_s"]
        checked.append(
            {
                "target": target.describe(),
                "backend": target.backend,
                "op": target.op,
                "in_flight": target.in_flight,
                "baseline": target.baseline,
                "minimum": target.minimum,
                "reached": round(reached, 3),
                "met": reached >= target.minimum,
            }
        )
    return checked


# ---- tables ---------------------------------------------------------------------------


def _row(cells: Iterable[str], widths: Iterable[int]) -> str:
    return "  ".join(
        cell.ljust(width) if i < 3 else cell.rjust(width)
        for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
    ).rstrip()


def _figure_cells(figure: Figure) -> list[str]:
    return [f"{figure.ops_per_s:,.0f}", f"{figure.p50_ms:.3f}", f"{figure.p99_ms:.3f}"]


def _main_table(result: BackendResult, out: TextIO) -> None:
    names = [n for c in result.main for n in (*c.figures, *c.unavailable)]
    widths = (9, 9, max(32, 5 + max(map(len, names), default=0)), 10, 9, 9)
    print(_row(("op", "in flight", "contender", "ops/s", "p50 ms", "p99 ms"), widths), file=out)
    for c in result.main:
        lead = [c.op, str(c.in_flight)]
        for name in c.baselines:
            print(_row([*lead, name, *_figure_cells(c.figures[name])], widths), file=out)
            lead = ["", ""]
        for name in c.unavailable:
            print(_row([*lead, name, "n/a", "", ""], widths), file=out)
            lead = ["", ""]
        for name in c.statekit:
            print(_row([*lead, name, *_figure_cells(c.figures[name])], widths), file=out)
            for baseline in c.baselines:
                ratio = c.ratio(name, baseline)
                cells = [f"{ratio[k]:.2f}x" for k in ("ops_per_s", "p50_ms", "p99_ms")]
                print(_row(["", "", f"  vs {baseline}", *cells], widths), file=out)


def family_cell(c: Comparison, family: str, subject: str = "statekit") -> str:
    """``subject``'s ops/s over each baseline of ``family`` in ``c``, with the baseline's
    tag: ``"0.11x (WAL) / 0.17x (default journal)"``; ``"n/a (tag)"`` where the peer
    cannot do the operation, ``""`` where the family has no baseline here."""
    members = [(name, tag) for name, (fam, tag) in c.families.items() if fam == family]
    cells = []
    for name, tag in members:
        if name in c.figures:
            cell = f"{c.ratio(subject, name)['ops_per_s']:.2f}x"
        elif name in c.unavailable:
            cell = "n/a"
        else:
            continue
        cells.append(f"{cell} ({tag})")
    return " / ".join(cells)


def _family_table(result: BackendResult, out: TextIO) -> None:
    """statekit's ops/s against each family of baselines, one row per op and in flight."""
    families = [
        f for f in FAMILIES if any(f == fam for c in result.main for fam, _ in c.families.values())
    ]
    if not families:
        return
    print(f"\n{result.name}: statekit ops/s / each baseline's, by family", file=out)
    header = ["op", "in flight", *(f"vs {f}" for f in families)]
    rows = [[c.op, str(c.in_flight), *(family_cell(c, f) for f in families)] for c in result.main]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out
        )


def _scaling_table(
    comparisons: list[Comparison], by: str, metric: str, title: str, out: TextIO
) -> None:
    if not comparisons:
        return
    first = comparisons[0]
    names = [*first.baselines, *first.statekit]
    # Baselines go by their tags ("asyncpg", "WAL", ...), named in full once above the table.
    tags = {b: first.families.get(b, (b, b))[1] for b in first.baselines}
    missing = f" (n/a: {', '.join(first.unavailable)})" if first.unavailable else ""
    print(f"\n{title}{missing}", file=out)
    if any(tag != b for b, tag in tags.items()):
        print("  " + ", ".join(f"{tag}: {b}" for b, tag in tags.items() if tag != b), file=out)
    header = [
        by.replace("_", " "),
        *(tags.get(n, n) for n in names),
        *(f"vs {tags[b]}" for b in first.baselines),
    ]
    widths = [max(10, len(h)) for h in header]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)), file=out)
    for c in comparisons:
        key = c.scope_size if by == "scope_size" else c.in_flight
        values = [getattr(c.figures[n], metric) for n in names]
        cells = [f"{key:,}"] + [f"{v:,.0f}" if v >= 100 else f"{v:.3f}" for v in values]
        cells += [f"{c.ratio('statekit', b)[metric]:.2f}x" for b in c.baselines]
        print("  ".join(x.rjust(w) for x, w in zip(cells, widths, strict=True)), file=out)


def list_growth(result: BackendResult) -> dict[str, float] | None:
    """statekit's listing time in the largest scope over that in a 100-key scope."""
    lists = {c.scope_size: c for c in result.scaling if c.op == "list"}
    largest = max((size for size in lists if size is not None), default=0)
    if 100 not in lists or largest <= 100:
        return None
    small, large = lists[100].figures["statekit"], lists[largest].figures["statekit"]
    return {
        "scope_size": largest,
        "p50_ms": large.p50_ms,
        "p50_ms_at_100": small.p50_ms,
        "growth": large.p50_ms / small.p50_ms,
    }


def print_report(results: list[BackendResult], targets: list[dict[str, Any]], out: TextIO) -> None:
    print(
        "\nRatios ('vs' rows): statekit's figure / the baseline's. ops/s above 1x and "
        "latencies below 1x mean statekit is faster. Medians of the runs.",
        file=out,
    )
    for result in results:
        print(f"\n== {result.name}: {result.server}  ({result.where})", file=out)
        _main_table(result, out)
        _family_table(result, out)
        scaling = result.scaling
        for op, title in (
            ("snapshot", "snapshot p50 ms, one scope of N keys, 1 in flight"),
            ("list", "list p50 ms, prefix matching 50 keys, scope of N keys, 1 in flight"),
        ):
            rows = [c for c in scaling if c.op == op and c.scope_size is not None]
            _scaling_table(rows, "scope_size", "p50_ms", title, out)
        growth = list_growth(result)
        if growth is not None:
            print(
                f"statekit list in a {growth['scope_size']:,}-key scope: "
                f"{growth['p50_ms']:.3f} ms, {growth['growth']:.1f}x its time at 100 keys",
                file=out,
            )
        rows = [c for c in scaling if c.op == "set" and c.scope_size is None]
        _scaling_table(rows, "in_flight", "ops_per_s", "set ops/s by calls in flight", out)
    if targets:
        print("\nTargets (ops/s ratios):", file=out)
        for t in targets:
            verdict = "met" if t["met"] else "MISSED"
            print(f"  {t['target']}: {t['reached']:.2f}x  {verdict}", file=out)


# ---- JSON -----------------------------------------------------------------------------


def _figure_json(figure: Figure) -> dict[str, Any]:
    return {
        "ops_per_s": round(figure.ops_per_s, 1),
        "p50_ms": round(figure.p50_ms, 4),
        "p99_ms": round(figure.p99_ms, 4),
        "runs": [
            {
                "ops": s.ops,
                "seconds": round(s.seconds, 4),
                "ops_per_s": round(s.ops_per_s, 1),
                "p50_ms": round(s.p50_ms, 4),
                "p99_ms": round(s.p99_ms, 4),
            }
            for s in figure.runs
        ],
    }


def _comparison_json(c: Comparison) -> dict[str, Any]:
    return {
        "op": c.op,
        "in_flight": c.in_flight,
        "scope_size": c.scope_size,
        "figures": {name: _figure_json(figure) for name, figure in c.figures.items()},
        "unavailable": dict(c.unavailable),
        "families": {name: {"family": f, "tag": tag} for name, (f, tag) in c.families.items()},
        "ratios": [
            {
                "statekit": name,
                "baseline": baseline,
                **{k: round(v, 4) for k, v in c.ratio(name, baseline).items()},
            }
            for name in c.statekit
            for baseline in c.baselines
        ],
    }


def results_json(
    results: list[BackendResult],
    targets: list[dict[str, Any]],
    machine: dict[str, Any],
    settings: dict[str, Any],
) -> dict[str, Any]:
    return {
        "format": 1,
        "settings": settings,
        "machine": machine,
        "backends": {
            r.name: {
                "server": r.server,
                "where": r.where,
                "main": [_comparison_json(c) for c in r.main],
                "scaling": [_comparison_json(c) for c in r.scaling],
                "list_growth": list_growth(r),
            }
            for r in results
        },
        "targets": targets,
    }
