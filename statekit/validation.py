"""Input rules shared by every backend: keys, scopes, contexts, versions, JSON values.

Everything here runs before any I/O, so a refused input never reaches a backend and
never writes anything. Refusals are :class:`Refusal` exceptions carrying the exact
message the seed-compatible API returns as ``(False, message)``. Each function checks one
rule; :class:`statekit.StateStore` calls them in a fixed order, so the first broken rule
is the one reported.
"""

from __future__ import annotations

import functools
import json
import json.encoder
import json.scanner
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from statekit.backends.base import (
    CONTEXT_FIELDS,
    OPTIONAL_CONTEXT_FIELDS,
    ScopeContext,
    StateEntry,
    StateWrite,
)
from statekit.json_chunks import json_chunks
from statekit.scope import VALID_STATE_SCOPES

MAX_VALUE_JSON_BYTES = 256 * 1024
MAX_STATE_KEY_LENGTH = 255
#: Scope keys statekit computes have 79 characters; hosts' own may have up to this many.
MAX_SCOPE_KEY_LENGTH = 512
MAX_LIST_LIMIT = 100
# Deep enough for any real state, shallow enough that every reader (this process at any
# call depth, other JSON parsers) can decode what was stored: Python's json module
# recurses once per level and would otherwise accept on write what it cannot read back.
MAX_VALUE_DEPTH = 512
MAX_EXPECTED_VERSION = 2**63 - 1  # versions are signed 64-bit integers on every backend

# C0 and C1 control characters, plus lone surrogates, which no backend can encode as UTF-8.
_FORBIDDEN_KEY_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


#: The classes of refusal, a small fixed set a log record or a metric can carry: the
#: message itself may quote the input (a key, a size), the class never does.
REFUSAL_REASONS = (
    "policy",  # state or the scope is disabled by the binding's policy
    "scope",  # not one of the four scope names
    "identity",  # the event lacks the identity the scope is keyed by
    "key",  # a state key or list prefix breaks the key rules
    "scope_key",  # a host's own scope key breaks its rules
    "context",  # a context field that cannot be stored
    "value",  # a value that is not strict JSON
    "value_size",  # a value over MAX_VALUE_JSON_BYTES
    "argument",  # any other argument of the wrong type or range
)


class Refusal(ValueError):
    """An input statekit refuses; ``str(refusal)`` is the user-facing message and
    :attr:`reason` its class (one of :data:`REFUSAL_REASONS`), safe to log or count."""

    def __init__(self, message: str, reason: str = "argument") -> None:
        super().__init__(message)
        self.reason = reason


def check_state_key(key: object) -> str:
    """Return ``key`` if it is a valid state key, else raise :class:`Refusal`.

    Valid: a non-empty ``str`` of at most 255 characters with no control character
    (C0, C1, NUL) and no lone surrogate.
    """
    if not isinstance(key, str):
        raise Refusal(f"State key must be a string, not {type(key).__name__}", "key")
    if not key:
        raise Refusal("State key must not be empty", "key")
    if len(key) > MAX_STATE_KEY_LENGTH:
        raise Refusal(
            f"State key length {len(key)} exceeds limit {MAX_STATE_KEY_LENGTH} characters",
            "key",
        )
    if _FORBIDDEN_KEY_CHARS.search(key):
        raise Refusal("State key must not contain control characters or lone surrogates", "key")
    return key


def check_prefix(prefix: object) -> str:
    """Return a list prefix (``None`` and ``""`` mean none), else raise :class:`Refusal`."""
    if prefix is None or prefix == "":
        return ""
    return check_state_key(prefix)


def check_scope_key(scope_key: object) -> str:
    """Scope keys are opaque, but they must be non-empty strings any backend can store.

    A runner's reads keep naming the same few scope keys: accepted ``str`` ones are
    remembered, sparing the search through each one's 79 characters (a good part of
    a read's cost)."""
    if type(scope_key) is str:
        return _checked_scope_key(scope_key)
    return _check_scope_key(scope_key)


def _check_scope_key(scope_key: object) -> str:
    if not isinstance(scope_key, str) or not scope_key:
        raise Refusal("Scope key must be a non-empty string", "scope_key")
    if len(scope_key) > MAX_SCOPE_KEY_LENGTH or _FORBIDDEN_KEY_CHARS.search(scope_key):
        raise Refusal(
            f"Scope key must be at most {MAX_SCOPE_KEY_LENGTH} characters "
            "without control characters",
            "scope_key",
        )
    return scope_key


_checked_scope_key = functools.lru_cache(maxsize=4096)(_check_scope_key)


MAX_CONTEXT_FIELD_LENGTH = 255
_UNSTORABLE_TEXT = re.compile("[\x00\ud800-\udfff]")


def check_context(context: ScopeContext) -> ScopeContext:
    """Refuse context fields no backend can store faithfully: SQL keeps them in 255-character
    columns and PostgreSQL text cannot hold NUL, so those are refused, never truncated."""
    fields = context.as_dict()
    texts = [value for value in fields.values() if value is not None]
    # Every write checks its context: one search over all the fields, not one per field,
    # and for ASCII text (no surrogates possible) a plain search for NUL.
    joined = "".join(texts)
    storable = "\x00" not in joined if joined.isascii() else _UNSTORABLE_TEXT.search(joined) is None
    if storable and max(map(len, texts), default=0) <= MAX_CONTEXT_FIELD_LENGTH:
        return context
    for name, value in fields.items():
        if value is not None and (
            len(value) > MAX_CONTEXT_FIELD_LENGTH or _UNSTORABLE_TEXT.search(value)
        ):
            raise Refusal(
                f'Context field "{name}" must be at most {MAX_CONTEXT_FIELD_LENGTH} characters '
                "without NUL or lone surrogates",
                "context",
            )
    return context


def check_scope(scope: object) -> str:
    """Return ``scope`` if it is one of :data:`~statekit.VALID_STATE_SCOPES`, else refuse."""
    if not isinstance(scope, str) or scope not in VALID_STATE_SCOPES:
        raise Refusal(f"Invalid scope: {scope}", "scope")
    return scope


def check_owner(runner_id: object, binding_identity: object) -> tuple[str, str]:
    """The runner id and binding identity stored with an entry must both be ``str``
    (any text, even empty: the original store accepted it, and rows hold it)."""
    if not isinstance(runner_id, str) or not isinstance(binding_identity, str):
        raise Refusal("runner_id and binding_identity must be strings")
    return runner_id, binding_identity


def check_expected_version(expected_version: object) -> int | None:
    """``None`` (unconditional) or an ``int`` from 0 (only if absent) to 2**63 - 1, the
    largest version any backend stores; ``bool`` is refused although it is an ``int``."""
    if expected_version is None:
        return None
    if (
        isinstance(expected_version, bool)
        or not isinstance(expected_version, int)
        or not 0 <= expected_version <= MAX_EXPECTED_VERSION
    ):
        raise Refusal(
            f"expected_version must be an integer from 0 to 2**63 - 1, not {expected_version!r}"
        )
    return expected_version


_NO_CONTEXT: tuple[None, ...] = (None,) * len(OPTIONAL_CONTEXT_FIELDS)


def check_context_mapping(context: object) -> tuple[Any, ...]:
    """The values of the State API's ``context`` argument in ``OPTIONAL_CONTEXT_FIELDS``
    order: all ``None`` when it is ``None`` or empty, ``None`` for each field it lacks.
    Unknown keys are ignored; anything but a mapping is refused."""
    if context is None:
        return _NO_CONTEXT
    if not isinstance(context, Mapping):
        raise Refusal(f"context must be a mapping, not {type(context).__name__}")
    if not context:
        return _NO_CONTEXT
    return tuple(map(context.get, OPTIONAL_CONTEXT_FIELDS))


def checked_context(
    runner_id: str, binding_identity: str, scope: str, extra: tuple[Any, ...]
) -> ScopeContext:
    """The :class:`ScopeContext` of ``extra`` (values in ``OPTIONAL_CONTEXT_FIELDS``
    order), checked by :func:`check_context`. Values that are not text are stored as
    their text (:func:`context_text`), or refused when it cannot be made.

    Text ids (the usual case) map to their checked context through a cache, as a runner
    keeps writing to the same few scopes: building and checking it is a good part of a
    write's cost. Other values are converted and checked every time (1 and True are equal
    cache keys, but not equal text).
    """
    if extra is _NO_CONTEXT and type(runner_id) is type(binding_identity) is type(scope) is str:
        return _checked_owner_context(runner_id, binding_identity, scope)
    values = (runner_id, binding_identity, scope, *extra)
    for value in values:
        if value is not None and type(value) is not str:
            return check_context(ScopeContext(*map(context_text, CONTEXT_FIELDS, values)))
    return _checked_text_context(values)


def context_text(name: str, value: Any) -> Any:
    """The text a context field is stored as: ``None`` and ``str`` as they are, any other
    value as ``str(value)``. The one conversion of an id to text, for the State API's
    ``context`` and an event's ids alike.

    A value whose text cannot be made (an int past Python's digit limit for int-to-str
    conversion, an object whose ``__str__`` raises) is refused, naming the field.
    """
    if value is None or type(value) is str:
        return value
    try:
        return str(value)
    except Exception:  # the id's own __str__ may raise anything: that is a refusal too
        raise no_text(name, value) from None


def no_text(name: str, value: Any) -> Refusal:
    """The refusal of a context field (or scope identity field) that has no storable text."""
    return Refusal(
        f'Context field "{name}" has no storable text ({type(value).__name__} value)', "context"
    )


@functools.lru_cache(maxsize=4096)
def _checked_text_context(values: tuple[str | None, ...]) -> ScopeContext:
    return check_context(ScopeContext(*values))  # type: ignore[arg-type]


@functools.lru_cache(maxsize=4096)
def _checked_owner_context(runner_id: str, binding_identity: str, scope: str) -> ScopeContext:
    """A write without a ``context`` argument (the usual one): its three ids are the key."""
    return _checked_text_context((runner_id, binding_identity, scope, *_NO_CONTEXT))


def check_limit(limit: object) -> int:
    """Clamp a list limit to ``0..MAX_LIST_LIMIT``; anything but an ``int`` is refused."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise Refusal(f"limit must be an integer, not {type(limit).__name__}")
    return max(0, min(limit, MAX_LIST_LIMIT))


# What json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")) uses,
# built once: json.dumps builds a new encoder per call when given any option.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_CONTAINERS = (dict, list, tuple)


def _one_shot_encoder() -> Callable[[Any], str]:
    """``_ENCODER.encode``, made once: the encoder's C core, which ``encode`` builds
    anew on every call (most of its cost for a small value), without its check for
    cycles. A value reaches it only after :func:`_scan` bounded its size, which a cycle
    never passes (each step adds to the bound), so that check finds nothing; a recursion
    too deep is refused as before. Where the C core is missing or is built differently
    (another Python), or encodes a sample differently, ``_ENCODER.encode`` itself."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - a Python without the C accelerator
        return _ENCODER.encode
    try:
        core = make(
            None,
            _ENCODER.default,
            json.encoder.encode_basestring,
            None,
            ":",
            ",",
            False,
            False,
            False,
        )

        def encode(value: Any) -> str:
            return "".join(core(value, 0))

        sample = {"a": [1, -2.5, 1e300, '\u00e9\u2028"\\', None, True, []], "": {}}
        if encode(sample) != _ENCODER.encode(sample) or encode("x") != '"x"':
            return _ENCODER.encode
    except (TypeError, ValueError):  # pragma: no cover - another Python
        return _ENCODER.encode
    return encode


_encode = _one_shot_encoder()


def encode_value(value: Any) -> str:
    """Serialise ``value`` to strict JSON text within the size limit, or raise :class:`Refusal`.

    Strict means what every JSON parser accepts: no NaN or Infinity, and text that encodes
    as UTF-8 (a lone surrogate is refused). The size counted is that of the stored text.

    Time and memory are bounded by the limit, not by the value: a small object graph that
    shares references (``[["x" * 1000] * 1000] * 200`` is 200 MB of text) is refused after
    encoding little more than the limit. One walk bounds the text's size from below; a value
    it shows to be small (the usual case) is encoded in one call of the C encoder, any other
    chunk by chunk, keeping no more text than the limit and counting sizes up to twice the
    limit: a larger value's refusal says ``at least N bytes``, as the rest is never encoded.
    """
    flat = _flat_bound(value) if type(value) is dict else None
    if flat is not None and flat <= MAX_VALUE_JSON_BYTES:
        return _encode_whole(value)  # a small plain object (the usual value): no rule broken
    bound, problem = _walk(value) if flat is None else (flat, None)
    if bound > MAX_VALUE_JSON_BYTES:
        text = _encode_in_chunks(value)
        # Reached only if a subclass's __len__ overstated the bound: check the whole value.
        problem = _scan(value, math.inf)[1]
    else:
        text = _encode_whole(value)
    if problem is not None:
        raise Refusal(f"Value is not JSON-serializable: {problem}", "value")
    return text


def _encode_whole(value: Any) -> str:
    try:
        text = _encode(value)
        # ASCII text is its own UTF-8; any other is encoded, which also refuses surrogates.
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
    except (TypeError, ValueError, RecursionError) as exc:
        # UnicodeEncodeError is a ValueError: lone surrogates land here too.
        raise Refusal(f"Value is not JSON-serializable: {exc}", "value") from None
    if size > MAX_VALUE_JSON_BYTES:
        raise Refusal(
            f"Value size {size} bytes exceeds limit {MAX_VALUE_JSON_BYTES} bytes", "value_size"
        )
    return text


def _encode_in_chunks(value: Any) -> str:
    """:func:`_encode_whole` for a value that may be large: the same text, made piece by
    piece, keeping it up to the limit and counting on to :data:`_SIZE_COUNTED`, so that the
    size of a value up to twice the limit is reported exactly."""
    kept: list[str] = []
    chunks: list[str] = []  # joined into ``kept`` now and then: a small str costs ~50 bytes
    size = chars = 0
    exact = True
    pieces = json_chunks(value)
    try:
        for chunk in pieces:
            size += len(chunk) if chunk.isascii() else _utf8_size(chunk, chars)
            chars += len(chunk)
            if size <= MAX_VALUE_JSON_BYTES:
                chunks.append(chunk)
                if len(chunks) == 4096:
                    kept.append("".join(chunks))
                    chunks.clear()
            elif size > _SIZE_COUNTED:
                more = next(pieces, None)
                if more is not None:
                    exact = False
                    size += _utf8_size(more, chars)
                break
    except Refusal:
        raise
    except (TypeError, ValueError) as exc:
        raise Refusal(f"Value is not JSON-serializable: {exc}", "value") from None
    if size <= MAX_VALUE_JSON_BYTES:
        return "".join(kept) + "".join(chunks)
    at_least = "" if exact else "at least "
    raise Refusal(
        f"Value size {at_least}{size} bytes exceeds limit {MAX_VALUE_JSON_BYTES} bytes",
        "value_size",
    )


#: How far the size of a refused value is counted: past it, only "at least N bytes" is known.
_SIZE_COUNTED = 2 * MAX_VALUE_JSON_BYTES


def _utf8_size(chunk: str, offset: int) -> int:
    """The UTF-8 size of one chunk that starts ``offset`` characters into the text."""
    if chunk.isascii():
        return len(chunk)
    try:
        return len(chunk.encode("utf-8"))
    except UnicodeEncodeError as exc:
        # Report the position in the whole text, as encoding it whole does.
        exc.object, exc.start, exc.end = (
            chunk.rjust(offset + len(chunk)),
            *(index + offset for index in (exc.start, exc.end)),
        )
        raise Refusal(f"Value is not JSON-serializable: {exc}", "value") from None


def _scan(value: Any, budget: float = MAX_VALUE_JSON_BYTES) -> tuple[float, str | None]:
    """A lower bound of the size of ``value``'s JSON text, counted until it passes
    ``budget``, and the first structure rule it breaks (``None`` if none was seen).

    The rules: object keys must be strings (``json.dumps`` would turn ``{1: "a", "1": "b"}``
    into an object whose duplicate keys lose a value on the way back), nesting at most
    :data:`MAX_VALUE_DEPTH` deep. The bound counts brackets and commas, keys and strings,
    a digit for every 4 bits of a large int: the text is at most about 25 times that (a
    float's 24 characters, where the bound counts its comma). Each step adds to the bound,
    so the walk stops after about ``budget`` steps whatever the value (even a cycle, which
    the encoder refuses); iterative, so it cannot run out of stack. Plain loops, as it walks
    every value written.
    """
    if type(value) is dict:
        flat = _flat_bound(value)
        if flat is not None:
            return flat, None
    return _walk(value, budget)


def _walk(value: Any, budget: float = MAX_VALUE_JSON_BYTES) -> tuple[float, str | None]:
    """:func:`_scan` for a value :func:`_flat_bound` does not take."""
    if not isinstance(value, _CONTAINERS):
        return _leaf_bound(value), None
    problem: str | None = None
    size = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    push, pop = stack.append, stack.pop
    while stack:
        item, depth = pop()
        size += len(item) + 1
        if size > budget:
            break
        if depth > MAX_VALUE_DEPTH and problem is None:
            problem = f"nested deeper than {MAX_VALUE_DEPTH} levels"
        if isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    problem = problem or f"object keys must be strings, not {type(key).__name__}"
                    size += sum(len(key) for key in item if isinstance(key, str))
                    break
            else:
                size += sum(map(len, item))
            item = item.values()
        for child in item:
            cls = type(child)
            if cls is str:
                size += len(child)
            elif cls is int:
                if not -_BIG_INT < child < _BIG_INT:
                    size += child.bit_length() >> 2
            elif cls in _PLAIN:
                pass
            elif isinstance(child, _CONTAINERS):
                push((child, depth + 1))
            else:
                size += _leaf_bound(child)
        if size > budget:
            break
    return size, problem


_PLAIN = frozenset((float, bool, type(None)))  # leaves of at most 24 characters
_BIG_INT = 2**64  # smaller ints have at most 20 digits: the comma counted is bound enough


def _flat_bound(value: dict[Any, Any]) -> int | None:
    """:func:`_scan`'s bound for an object of text keys whose values are plain leaves or
    lists of them (the usual value: a few fields and a list of tags), in one loop; ``None``
    for any other object, or one whose lists pass the limit, which the general walk takes."""
    size = len(value) + 1
    for key, child in value.items():
        if type(key) is not str:
            return None
        cls = type(child)
        if cls is str:
            size += len(key) + len(child)
        elif cls in _PLAIN or (cls is int and -_BIG_INT < child < _BIG_INT):
            size += len(key)
        elif cls is list:
            # Counted first, as the walk does: a long list stops it before its items.
            size += len(key) + len(child) + 1
            if size > MAX_VALUE_JSON_BYTES:
                return None
            for item in child:
                cls = type(item)
                if cls is str:
                    size += len(item)
                elif not (cls in _PLAIN or (cls is int and -_BIG_INT < item < _BIG_INT)):
                    return None
        else:
            return None
    return size


def _leaf_bound(value: Any) -> int:
    """A lower bound of the size of a value that is not a container (0 if it is not JSON)."""
    if isinstance(value, str):
        return str.__len__(value) + 2
    if isinstance(value, int):
        return int.bit_length(value) >> 2
    return 0


def _value_scanner() -> Callable[[str, int], tuple[Any, int]] | None:
    """The scanner ``json.loads`` ends in (the C one where there is one), made once.

    ``json.loads`` goes through three Python layers and two whitespace searches per
    value, most of its cost for a small one: a snapshot decodes forty of them."""
    make = getattr(json.scanner, "c_make_scanner", None)
    if make is None:  # pragma: no cover - a Python without the C accelerator
        return None
    scanner: Callable[[str, int], tuple[Any, int]] = make(json.JSONDecoder())
    return scanner


_scan_value = _value_scanner()


def decode_value(value_json: str) -> Any:
    """Parse stored JSON text; the inverse of :func:`encode_value`.

    Text as statekit stores it (compact: no whitespace around the value) is read by the
    scanner alone; anything else (whitespace, a BOM, bytes, invalid JSON) by
    ``json.loads``, which gives the value or the error it always gave."""
    if _scan_value is not None and type(value_json) is str:
        try:
            value, end = _scan_value(value_json, 0)
        except StopIteration:  # no value at the start: json.loads says why
            pass
        else:
            if end == len(value_json):
                return value
    return json.loads(value_json)


def check_entry(entry: StateEntry) -> StateWrite:
    """An exported entry as :meth:`StateStore.state_set` would write it, else a refusal.

    The keys and the context go through the same rules as a write (scope name, owner
    types, field lengths); the value is decoded and encoded again, so what is written is
    compact strict JSON within the size limit whatever the source stored. Keys are taken
    as stored: aliases are not applied, as the source's reads never applied them either.
    """
    scope_key = check_scope_key(entry.scope_key)
    state_key = check_state_key(entry.state_key)
    try:
        value = decode_value(entry.value_json)
    except (ValueError, RecursionError) as exc:
        raise Refusal(f"stored value is not valid JSON: {exc}", "value") from None
    value_json = encode_value(value)
    context = entry.context
    scope = check_scope(context.scope)
    runner_id, binding_identity = check_owner(context.runner_id, context.binding_identity)
    extra = tuple(getattr(context, name) for name in OPTIONAL_CONTEXT_FIELDS)
    return StateWrite(
        scope_key, state_key, value_json, checked_context(runner_id, binding_identity, scope, extra)
    )
