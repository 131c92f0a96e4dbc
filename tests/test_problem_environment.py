"""How dbt is told where the problem's models are: relative to the repository root, never absolute.

dbt writes each node's compiled SQL to ``<target>/compiled/<project>/<the node's file path>``; with an absolute
model path that join is the model's own file, and every run overwrote the problem's SQL with its compiled form.
"""

import os
from pathlib import Path

import pytest

from dagster_project.problem import PROBLEM_DIR_VARIABLE, problem_environment
from dagster_project.settings import REPO_ROOT


@pytest.mark.parametrize("problem_dir", [REPO_ROOT / "examples" / "subscription", Path("/elsewhere/a_problem")])
def test_dbt_reads_the_problem_folder_by_a_path_relative_to_the_repository(problem_dir: Path) -> None:
    value = problem_environment(problem_dir)[PROBLEM_DIR_VARIABLE]
    assert not os.path.isabs(value)
    # As dbt_project.yml resolves it: the repository root, then the value.
    assert Path(os.path.normpath(REPO_ROOT / value)) == problem_dir
