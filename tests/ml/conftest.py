"""Fixtures of the model tests: a synthetic training set in the offline store's Delta contract, small and fast."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from synthetic_churn import FAST, synthetic_training_set, write_training_set
from threadpoolctl import threadpool_limits

from dagster_project import lake
from dagster_project.defs.ml.training import TrainingParams
from dagster_project.settings import Settings


@pytest.fixture(autouse=True)
def _one_openmp_thread() -> Iterator[None]:
    """Fit and predict on one OpenMP thread: on data this small, thread start-up costs more than it saves, and on
    a busy machine far more. The models are identical whatever the thread count (the booster's sums do not depend
    on it), so nothing the tests assert changes."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture
def fast_params() -> TrainingParams:
    return TrainingParams(**FAST)


@pytest.fixture
def training_set(settings: Settings) -> tuple[Path, int]:
    """Version 0 of ``<lake>/offline_store/training_set``: 150 customers x 40 snapshots, 3 days apart."""
    path = lake.offline_store(settings.lake_root).training_set
    version = write_training_set(path, synthetic_training_set())
    return path, version
