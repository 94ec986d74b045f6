"""Strict compact JSON text in pieces, for encoding a value that may be too large to keep.

:func:`json_chunks` yields the text ``json.dumps(value, ensure_ascii=False,
allow_nan=False, separators=(",", ":"))`` makes, piece by piece, so that a caller can
count the size and stop once it is past a limit, having kept and spent no more than that.
``json.JSONEncoder.iterencode`` does the same with one generator per nesting level, so
each piece costs time in proportion to the depth (seconds for a value 500 levels deep);
here an explicit stack makes every piece cost the same. Leaves are encoded by the
functions ``json`` itself uses (its C string encoder, ``int.__repr__``, ``float.__repr__``),
and the errors are the C encoder's: ``TypeError`` for what JSON cannot represent,
``ValueError`` for NaN, infinities and circular references. Nesting has no limit here (the
caller's rules bound it), so deep values raise no ``RecursionError``.
"""

from __future__ import annotations

import json.encoder
import math
from collections.abc import Iterator
from itertools import chain, repeat
from typing import Any

_encode_str = json.encoder.encode_basestring  # what json uses with ensure_ascii=False
_CONSTANTS: dict[Any, str] = {None: "null", True: "true", False: "false"}


def json_chunks(value: Any) -> Iterator[str]:
    """The pieces of ``value``'s strict compact JSON text, in order (see the module)."""
    markers: set[int] = set()
    # One entry per open container: its (separator, child) pairs, closing text and id.
    stack: list[tuple[Iterator[tuple[str, Any]], str, int]] = []
    # The text before the next leaf: the brackets opened since the last piece and the
    # separators between them, kept apart and joined once, with the leaf. (Prepending
    # each bracket to a string would copy it once per level: quadratic in the depth.)
    opened: list[str] = []
    item = value
    while True:
        cls = type(item)
        if cls is str:
            yield _joined(opened, _encode_str(item))
        elif cls is int:
            yield _joined(opened, int.__repr__(item))
        elif isinstance(item, (list, tuple)):
            if item:
                opened.append("[")
                items = zip(chain(("",), repeat(",")), item, strict=False)
                stack.append((items, "]", _mark(item, markers)))
            else:
                yield _joined(opened, "[]")
        elif isinstance(item, dict):
            if item:
                opened.append("{")
                stack.append((_members(item, ""), "}", _mark(item, markers)))
            else:
                yield _joined(opened, "{}")
        else:
            yield _joined(opened, _leaf(item))
        while stack:
            members, closing, ident = stack[-1]
            member = next(members, None)
            if member is not None:
                separator, item = member
                if separator:
                    opened.append(separator)
                break
            stack.pop()
            markers.discard(ident)
            yield closing
        else:
            return


def _joined(opened: list[str], text: str) -> str:
    """``text`` after the pending ``opened`` pieces, which are then gone."""
    if not opened:
        return text
    opened.append(text)
    piece = "".join(opened)
    opened.clear()
    return piece


def _mark(container: Any, markers: set[int]) -> int:
    """Remember an open container, refusing one that is already open (a cycle)."""
    ident = id(container)
    if ident in markers:
        raise ValueError("Circular reference detected")
    markers.add(ident)
    return ident


def _members(mapping: dict[Any, Any], separator: str) -> Iterator[tuple[str, Any]]:
    for key, value in mapping.items():
        yield f"{separator}{_encode_str(_key_text(key))}:", value
        separator = ","


def _key_text(key: Any) -> str:
    """An object key as JSON names it: ``str`` as is, the other scalars by their text."""
    if isinstance(key, str):
        return key
    if isinstance(key, float):
        return _float(key)
    if key is True or key is False or key is None:
        return _CONSTANTS[key]
    if isinstance(key, int):
        return int.__repr__(key)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")


def _leaf(value: Any) -> str:
    if value is None or value is True or value is False:
        return _CONSTANTS[value]
    if isinstance(value, str):
        return _encode_str(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError("Out of range float values are not JSON compliant")
    return float.__repr__(value)


__all__ = ["json_chunks"]
