"""Shared fixtures for the grid-intensity tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakeapi_intensity import FakeApi

from carbontrack.intensity.catalogue import Catalogue

REPO = Path(__file__).resolve().parents[3]


def raw_dir() -> Path:
    """The raw reference data (read-only); CARBONTRACK_RAW_DATA overrides the default."""
    return Path(os.environ.get("CARBONTRACK_RAW_DATA", REPO / "data/raw"))


@pytest.fixture(scope="session")
def raw() -> Path:
    path = raw_dir()
    if not (path / "PROVENANCE.md").exists():
        pytest.skip(f"raw data not found at {path}; set CARBONTRACK_RAW_DATA")
    return path


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return Catalogue.load()


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi()
    try:
        yield api
    finally:
        api.close()
