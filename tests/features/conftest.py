"""The simulated history the feature tests share, built once per session from the dbt CLI alone."""

import pytest
from feature_support import CLI_ENV, SIMULATED_DAYS, SimulatedBase, run_dbt, simulated_settings, write_simulated_raw


@pytest.fixture(scope="session")
def simulated_base(tmp_path_factory: pytest.TempPathFactory) -> SimulatedBase:
    """Five simulated days in a lake of its own, then `dbt build` and `dbt docs generate` exactly as a person
    runs them from the repository root (no vars: every day the raw layer holds)."""
    settings = simulated_settings(tmp_path_factory.mktemp("simulated") / "data")
    write_simulated_raw(settings.lake_root, settings.simulation, SIMULATED_DAYS)
    build = run_dbt(settings, "build", env=CLI_ENV)
    docs = run_dbt(settings, "docs", "generate", env=CLI_ENV)
    return SimulatedBase(settings, build.stdout, docs.stdout)
