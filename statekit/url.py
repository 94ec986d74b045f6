"""Backend URLs, parsed once, that never show a password.

A URL is how a user names a backend (``redis://:secret@cache:6379/0``,
``sqlite+aiosqlite:///./statekit.db``). It travels through settings, error messages, the
command line and logs, so the value object that carries it masks the password in
``str`` and ``repr``; only :meth:`BackendURL.unmasked` gives the real text, for the
code that hands it to a driver. :func:`mask_password` is the one masker: backends built
over a host's client or engine show their URL through it too.

Masking fails safe. The user info (``user:password``) ends at the *last* ``@`` after
``://``, so a password holding an unencoded ``@``, ``/``, ``?``, ``#``, ``[`` or ``]`` is
hidden whole, even where a URL parser would have split it into host, path, query or
fragment. :class:`BackendURL` refuses such a URL (the drivers would read it another way),
and an ``@`` after a path or query of a URL with a ``:`` before it, which reads either way,
with a :class:`~statekit.errors.ConfigurationError` that shows the masked URL only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from statekit.errors import ConfigurationError

MASK = "***"
# What ends the authority of a URL; none may stand unencoded in its user info (RFC 3986).
_AUTHORITY_END = "/?#"
_NOT_IN_USERINFO = frozenset("/?#[]")


class BackendURL:
    """An immutable, parsed backend URL: ``scheme``, ``query`` and a masked text form.

    Raises :class:`~statekit.errors.ConfigurationError` for text that is not
    ``scheme://...`` and for a URL whose user name or password holds an unencoded ``/``,
    ``?``, ``#``, ``[`` or ``]`` (percent-encode them: ``%2F``, ``%3F``, ``%23``, ``%5B``,
    ``%5D``); an ``@`` may stay unencoded in a password, the last one ends it.
    """

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
        scheme, sep, rest = url.partition("://")
        if not sep or not scheme:
            raise ConfigurationError(
                f"Not a backend URL (expected 'scheme://...'): {mask_password(url)!r}"
            )
        userinfo, _, after = _split_userinfo(rest)
        if not _NOT_IN_USERINFO.isdisjoint(userinfo):
            if ":" in userinfo:
                raise ConfigurationError(
                    f"Ambiguous backend URL {mask_password(url)!r}: percent-encode '/', '?', "
                    "'#', '[' and ']' in a user name or password (%2F, %3F, %23, %5B, %5D) "
                    "and '@' in a path or query (%40)"
                )
            after = rest  # no password: the '@' is in the path or query, as a parser reads it
        query_text = after.partition("#")[0].partition("?")[2]
        self._url = url
        self._scheme = scheme.lower()
        self._query = dict(parse_qsl(query_text, keep_blank_values=True))

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

    def for_first_at_parsers(self) -> str:
        """:meth:`unmasked`, with any ``@`` before the last one percent-encoded: for a
        parser that ends the user info at the *first* ``@`` (SQLAlchemy's), which would
        otherwise take the rest of a password such as ``p@ss`` for the host."""
        scheme, sep, rest = self._url.partition("://")
        userinfo, at, after = _split_userinfo(rest)
        if not at or "@" not in userinfo:
            return self._url
        return f"{scheme}{sep}{userinfo.replace('@', '%40')}{at}{after}"

    def __str__(self) -> str:
        return mask_password(self._url)

    def __repr__(self) -> str:
        return f"BackendURL({mask_password(self._url)!r})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, BackendURL) and other._url == self._url

    def __hash__(self) -> int:
        return hash(self._url)


def _split_userinfo(rest: str) -> tuple[str, str, str]:
    """``(userinfo, "@", everything after)`` of the text after ``://``; ``("", "", rest)``
    without user info. The last ``@`` ends it, wherever it is, unless the authority is
    empty (``sqlite:///path``), where no user info can be."""
    if rest.startswith(_AUTHORITY_END[0]):
        return "", "", rest
    return rest.rpartition("@") if "@" in rest else ("", "", rest)


def mask_password(url: str) -> str:
    """``url`` with the password part of its user info replaced by ``***``.

    Fails safe: the user info ends at the last ``@`` (see the module), so a password is
    hidden whole whatever it holds; text that is not a URL is masked the same way from its
    start (``user:secret@host`` gives ``user:***@host``). Text without a ``user:`` part
    before an ``@`` has no password and is returned as is.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, after = _split_userinfo(rest)
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:{MASK}@{after}"


__all__ = ["MASK", "BackendURL", "mask_password"]
