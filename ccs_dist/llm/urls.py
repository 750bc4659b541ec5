"""Endpoint URLs as they may be shown: credentials and query values redacted, loopback detection.

Every URL that reaches a table, a log line, an error message, ``score_meta.json`` or the report goes
through :func:`redact_url`; the full URL is only ever handed to the HTTP client.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"


def _split(url: str):
    """-> (parts, ``host[:port]`` without userinfo, IPv6 literals bracketed); ValueError when unparseable."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port is not None else ""
    return parts, (f"[{host}]" if ":" in host else host) + port if host else ""


def redact_url(url: str) -> str:
    """``http://user:pw@host:8000/v1?key=s`` -> ``http://***@host:8000/v1?key=***`` (userinfo and every
    query value hidden; anything that is not a parseable URL is returned as ``***``)."""
    try:
        parts, where = _split(url)
    except ValueError:
        return REDACTED
    if not parts.scheme and not parts.netloc:
        return str(url) if "@" not in str(url) and "?" not in str(url) else REDACTED
    userinfo = f"{REDACTED}@" if "@" in parts.netloc else ""
    query = urlencode([(k, REDACTED) for k, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, userinfo + where, parts.path, query, ""))


def url_secrets(url: str) -> list[str]:
    """The parts of ``url`` that :func:`redact_url` hides (user, password, query values), longest first."""
    try:
        parts = urlsplit(str(url))
        found = [parts.username, parts.password] + [v for _, v in parse_qsl(parts.query, keep_blank_values=True)]
        found.append(parts.netloc.rpartition("@")[0] if "@" in parts.netloc else None)
        found.append(parts.query or None)
    except ValueError:
        return []
    return sorted({f for f in found if f and len(f) >= 3}, key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` (e.g. a server's error message, which may echo the URL) with every secret replaced."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def host_port(url: str) -> str:
    """``host[:port]`` of ``url`` without userinfo (the part of a judge's name after ``@``)."""
    try:
        _, where = _split(url)
    except ValueError:
        return REDACTED
    return where or redact_url(url)


def is_loopback(url: str) -> bool:
    try:
        host = urlsplit(str(url)).hostname or ""
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def same_endpoint(a: str, b: str) -> bool:
    """Whether two base URLs name the same endpoint (trailing slashes and scheme/host case ignored)."""
    def norm(u: str):
        p = urlsplit(str(u).strip())
        return (p.scheme.lower(), p.netloc.lower(), p.path.rstrip("/"), p.query)

    try:
        return norm(a) == norm(b)
    except ValueError:
        return a == b
