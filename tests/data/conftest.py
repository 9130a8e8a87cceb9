"""Fixtures for the ingestion tests (helpers live in ingest_helpers.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def salt_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ENTROAD_DEID_SALT", "test-salt-not-secret")
    return "test-salt-not-secret"


