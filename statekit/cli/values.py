"""The value ``set`` writes: JSON text in the argument, ``-`` for stdin, ``@PATH`` for a file.

A value near the 256 KiB limit does not fit in an argument list (the kernel refuses
the command with ``Argument list too long``), so it comes from stdin or a file. Neither
form is ambiguous: JSON text never starts with ``@`` and ``-`` alone is not JSON.
"""

from __future__ import annotations

import sys
from typing import Any, BinaryIO

from statekit.cli.runtime import ExitCode, fail, parse_json_value
from statekit.validation import MAX_VALUE_JSON_BYTES

#: The most input read for one value. JSON text may be larger than the value it encodes
#: (indentation, ``\\u`` escapes), so this is well above the store's limit, which the
#: decoded value is then checked against; it only bounds what a mistake can make us read.
MAX_INPUT_BYTES = 16 * MAX_VALUE_JSON_BYTES

STDIN = "-"
FILE_PREFIX = "@"


def read_value(argument: str) -> Any:
    """The decoded value; a usage error (exit 2) for unreadable or invalid input and a
    refusal (exit 1) for input over :data:`MAX_INPUT_BYTES`."""
    if argument == STDIN:
        return _decode(_read(sys.stdin.buffer, "stdin"), "the value from stdin")
    if argument.startswith(FILE_PREFIX):
        path = argument[len(FILE_PREFIX) :]
        if not path:
            fail("give a file name after '@' (e.g. @value.json)", ExitCode.USAGE)
        try:
            with open(path, "rb") as stream:
                data = _read(stream, repr(path))
        except OSError as exc:
            fail(f"cannot read the value file {path!r}: {exc.strerror or exc}", ExitCode.USAGE)
        return _decode(data, f"the value in {path!r}")
    return parse_json_value(argument)


def _read(stream: BinaryIO, where: str) -> bytes:
    data = stream.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        fail(
            f"refused: {where} holds more than {MAX_INPUT_BYTES} bytes; a value is at most "
            f"{MAX_VALUE_JSON_BYTES} bytes of JSON",
            ExitCode.NOT_FOUND_OR_REFUSED,
        )
    return data


def _decode(data: bytes, what: str) -> Any:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        fail(f"{what} is not UTF-8 text (byte {exc.start})", ExitCode.USAGE)
    return parse_json_value(text, what)
