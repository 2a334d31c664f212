"""Secrets out of messages: every known secret in a text replaced by a fixed marker.

Provider tokens and passwords travel in request headers; an API that echoes them in an error
body, or a URL with a password in it, would otherwise carry them into exception messages,
logs, health output and reports. Whoever holds the secrets passes them here before a text
leaves. Secrets shorter than ``MIN_LENGTH`` are not replaced: redacting every "a" of a
message for a one-letter password would leave nothing readable (and such a secret is not one).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping

REDACTED = "[redacted]"
MIN_LENGTH = 4
# request headers whose values are credentials
SECRET_HEADERS = ("authorization", "proxy-authorization", "auth-token", "x-api-key")


def redact(text: str, secrets: Iterable[str]) -> str:
    # longest first, so a secret containing another is replaced whole
    for secret in sorted({s for s in secrets if len(s) >= MIN_LENGTH}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def header_secrets(headers: Mapping[str, str]) -> list[str]:
    """The credentials in request headers: each value, its part after the scheme
    ("Bearer <token>"), and for Basic auth the decoded "user:password" and the password."""
    out: list[str] = []
    for key, value in headers.items():
        if key.lower() not in SECRET_HEADERS:
            continue
        out.append(value)
        scheme, _, credential = value.partition(" ")
        if not credential:
            continue
        out.append(credential)
        if scheme.lower() == "basic":
            try:
                pair = base64.b64decode(credential, validate=True).decode("utf-8")
            except ValueError:
                continue
            out += [pair, pair.partition(":")[2]]
    return out


def yaml_problem(err: Exception) -> str:
    """A PyYAML error without the quoted line its own message carries (a kubeconfig's line may
    hold a token or key): the problem and its position only."""
    problem = getattr(err, "problem", None) or "invalid YAML"
    mark = getattr(err, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else str(problem)
