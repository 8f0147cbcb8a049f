"""URLs as messages and logs may show them: without their secrets.

A URL can carry a secret in three places: its user information (`https://user:password@host`), its query
(`?token=...`) and, for webhooks, its path (a Slack webhook's `/services/T.../B.../XXXX` is the credential itself,
also when mistyped as http). Every message or log line that can hold a URL shows it through `redact_url` (a value
known to be a URL) or `redact` (free text, such as an exception's message): the scheme, the host and port, and the
path's first segment when it is a plain word stay; the rest is replaced by `***`. URLs without a host (`sqlite:///`,
`file:///`) name local files, which are no secret: their path stays.
"""

from __future__ import annotations

import re

HIDDEN = "***"
# A scheme and everything up to whitespace, a quote or a brace: how a URL sits in a sentence or a repr ([::1] stays).
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>(){}`]*")
_PLAIN_WORD = re.compile(r"[A-Za-z][A-Za-z_-]{0,23}")  # /services, /api, /abm: a route, not a token


def redact_url(url: str) -> str:
    """`url` with its user information, query, fragment and (beyond a first plain word) path replaced by `***`.

    A value without a scheme is read as host/path, as a mistyped webhook would be."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    end = min((rest.find(mark) for mark in "?#" if mark in rest), default=len(rest))
    address, after = rest[:end], rest[end:]
    if "@" in address:  # the last @: a password may hold a / or an @ that its writer did not escape
        address = f"{HIDDEN}@{address.rsplit('@', 1)[1]}"
    slash = address.find("/")
    host, path = (address, "") if slash < 0 else (address[:slash], address[slash:])
    if host and path not in ("", "/"):  # a network address: its path may be a key
        first, _, more = path[1:].partition("/")
        if not _PLAIN_WORD.fullmatch(first):
            path = f"/{HIDDEN}"
        elif more:
            path = f"/{first}/{HIDDEN}"
    return f"{scheme}{separator}{host}{path}{after[:1]}{HIDDEN if after else ''}"


def redact(text: str) -> str:
    """`text` with every URL in it passed through `redact_url`."""
    return _URL.sub(lambda match: redact_url(match.group()), text)
