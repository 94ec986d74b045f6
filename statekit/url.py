"""Backend URLs, parsed once, that never show a password.

A URL is how a user names a backend (``redis://:secret@cache:6379/0``,
``sqlite+aiosqlite:///./statekit.db``). It travels through settings, error messages, the
command line and logs, so the value object that carries it masks the password in
``str`` and ``repr``; only :meth:`BackendURL.unmasked` gives the real text, for the
code that hands it to a driver. :func:`mask_password` is the one masker: backends built
over a host's client or engine show their URL through it too.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from statekit.errors import ConfigurationError

MASK = "***"


class BackendURL:
    """An immutable, parsed backend URL: ``scheme``, ``query`` and a masked text form."""

    __slots__ = ("_query", "_scheme", "_url")
    _url: str
    _scheme: str
    _query: dict[str, str]

    def __init__(self, url: str | BackendURL) -> None:
        if isinstance(url, BackendURL):
            self._url, self._scheme, self._query = url._url, url._scheme, url._query
            return
        if not isinstance(url, str):
            raise ConfigurationError(f"A backend URL must be a string, not {type(url).__name__}")
        scheme, sep, _ = url.partition("://")
        if not sep or not scheme:
            raise ConfigurationError(
                f"Not a backend URL (expected 'scheme://...'): {mask_password(url)!r}"
            )
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
        return mask_password(self._url)

    def __repr__(self) -> str:
        return f"BackendURL({mask_password(self._url)!r})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, BackendURL) and other._url == self._url

    def __hash__(self) -> int:
        return hash(self._url)


def mask_password(url: str) -> str:
    """``url`` with the password part of its user info replaced by ``***``.

    The last ``@`` of the authority ends the user info, so an unencoded ``@`` in a
    password is hidden too; a URL without a password (or not a URL) is returned as is.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority_end = len(rest)
    for stop in "/?#":
        index = rest.find(stop)
        if index != -1:
            authority_end = min(authority_end, index)
    authority, tail = rest[:authority_end], rest[authority_end:]
    userinfo, at, hosts = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:{MASK}@{hosts}{tail}"


__all__ = ["MASK", "BackendURL", "mask_password"]
