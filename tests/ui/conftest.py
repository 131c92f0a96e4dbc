"""Fixtures of the browser tests: ``dagster dev`` over the deployed platform's run (PostgreSQL-backed Dagster and
MLflow, ``tests/deployed_platform.py``) and one headless Chromium, each started once for the whole folder."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from deployed_platform import DeployedPlatform
from playwright.sync_api import BrowserContext, Page
from ui_support import ARTIFACTS, DagsterDev, browser_context, dagster_dev


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go: ``artifacts/ui/`` (gitignored), kept after the run for a person to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def dagster_ui(deployed_platform: DeployedPlatform) -> Iterator[DagsterDev]:
    """``dagster dev`` on a free port of 127.0.0.1 over the instance and data folder the pipeline ran in; stopped,
    process group and all, afterwards."""
    with dagster_dev(deployed_platform.env, deployed_platform.data_root.parent / "dagster-dev.log") as server:
        yield server


@pytest.fixture(scope="session")
def browser() -> Iterator[BrowserContext]:
    """Headless Chromium (Debian's) with a fresh profile, for the whole folder."""
    with browser_context() as context:
        yield context


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    page = browser.new_page()
    yield page
    page.close()
