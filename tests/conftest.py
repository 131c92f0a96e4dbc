"""Fixtures shared by the whole suite. Every test gets its own data root: nothing writes into the repo's data/."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from dagster_project.settings import Settings, get_settings


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh data root for one test, in force through the environment as the platform reads it."""
    root = tmp_path / "data"
    monkeypatch.setenv("PLATFORM_DATA_ROOT", str(root))
    get_settings.cache_clear()
    yield root
    get_settings.cache_clear()


@pytest.fixture
def settings(data_root: Path) -> Settings:
    return get_settings()
