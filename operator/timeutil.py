"""RFC 3339 times as Kubernetes writes them (shared with the reports: carbontrack.core)."""

from carbontrack.core.timeutil import format_time, parse_time

__all__ = ["format_time", "parse_time"]
