"""Backend URLs, parsed once, that never show a password.

A URL is how a user names a backend (``redis://:secret@cache:6379/0``,
``sqlite+aiosqlite:///./statekit.db``). It travels through settings, error messages, the
command line and logs, so the value object that carries it masks the password in
``str`` and ``repr``; only :meth:`BackendURL.unmasked` gives the real text, for the
backend that needs it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from statekit.errors import ConfigurationError

MASK = "***"


class BackendURL:
    """An immutable, parsed backend URL: ``scheme``, ``query`` and a masked text form."""

    __slots__ = ("_query", "_scheme", "_url")

    def __init__(self, url: str | BackendURL) -> None:
        if isinstance(url, BackendURL):
            url = url.unmasked()
        if not isinstance(url, str):
            raise ConfigurationError(f"A backend URL must be a string, not {type(url).__name__}")
        scheme, sep, _ = url.partition("://")
        if not sep or not scheme:
            raise ConfigurationError(f"Not a backend URL (expected 'scheme://...'): {_mask(url)!r}")
        query_text = url.partition("#")[0].partition("?")[2]
        query = dict(parse_qsl(query_text, keep_blank_values=True))
        self._url = url
        self._scheme = scheme.lower()
        self._query = query

    @property
    def scheme(self) -> str:
        """Lower-cased, with any ``+driver`` suffix kept (``postgresql+asyncpg``)."""
        return self._scheme

    @property
    def query(self) -> dict[str, str]:
        """The query parameters (options given in the URL), as a fresh dict."""
        return dict(self._query)

    def unmasked(self) -> str:
        """The URL as given, password included: hand it to a backend, never print it."""
        return self._url

    def __str__(self) -> str:
        return _mask(self._url)

    def __repr__(self) -> str:
        return f"BackendURL({_mask(self._url)!r})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, BackendURL) and other._url == self._url

    def __hash__(self) -> int:
        return hash(self._url)


def _mask(url: str) -> str:
    """``url`` with the password part of its user info replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority_end = len(rest)
    for stop in "/?#":
        index = rest.find(stop)
        if index != -1:
            authority_end = min(authority_end, index)
    authority, tail = rest[:authority_end], rest[authority_end:]
    # The last "@" ends the user info: an unencoded "@" in a password stays hidden too.
    userinfo, at, hosts = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:{MASK}@{hosts}{tail}"


__all__ = ["BackendURL"]
