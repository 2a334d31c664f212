"""batch/v1 Job: the first adapter (its reading lives in operator/jobs.py, unchanged)."""

from __future__ import annotations

from ..jobs import job_facts
from .base import CrdAdapter

JOB = CrdAdapter(group="batch", version="v1", plural="jobs", kind="Job", report_name="Job",
                 read=job_facts)
