"""RFC 3339 times as Kubernetes writes them (UTC, 'Z'); all instants are aware UTC."""

from __future__ import annotations

from datetime import datetime, timezone


def parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"time {text!r} has no zone: Kubernetes times are RFC 3339 with Z")
    return value.astimezone(timezone.utc)


def format_time(at: datetime) -> str:
    """Seconds precision unless sub-second parts exist (Kubernetes' own times are seconds)."""
    at = at.astimezone(timezone.utc)
    if at.microsecond:
        return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")
