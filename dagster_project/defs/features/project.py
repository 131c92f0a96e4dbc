"""The dbt project as Dagster sees it, and the manifest its assets are defined from.

The manifest (``dbt_project/target/manifest.json``) is generated, never committed. It is built at load time in
development (``dagster dev``) and whenever it is missing or older than the project's files (a fresh clone, an
edited model), so the definitions always load and always match the SQL. CI and deployments prepare it ahead:
``make manifest``, which runs dagster-dbt's own
``dagster-dbt project prepare-and-package --file dagster_project/defs/features/project.py`` (dbt on PATH).
"""

from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from dagster_dbt.dbt_project import using_dagster_dev
from filelock import FileLock

from dagster_project.resources import DBT_EXECUTABLE
from dagster_project.settings import DBT_PROJECT_DIR

# No target here: parsing uses the profile's own default (profiles.yml reads PLATFORM_DBT_TARGET), and every run
# names the target of the settings in force (``DbtResource``), so nothing is read from the settings at import.
dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)

# What the manifest is parsed from: a change to any of these makes it stale.
_SOURCES = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests")


def _newest_source_mtime(project: DbtProject) -> float:
    newest = 0.0
    for name in _SOURCES:
        path = project.project_dir / name
        files = [path] if path.is_file() else (p for p in path.rglob("*") if p.is_file())
        for file in files:
            newest = max(newest, file.stat().st_mtime)
    return newest


def manifest_is_stale(project: DbtProject = dbt_project) -> bool:
    """Whether the manifest is missing or older than a file it is parsed from."""
    manifest = project.manifest_path
    return not manifest.exists() or manifest.stat().st_mtime < _newest_source_mtime(project)


def _parse(project: DbtProject) -> None:
    dbt = DbtCliResource(project_dir=project, dbt_executable=DBT_EXECUTABLE)
    dbt.cli(["parse", "--quiet"], target_path=project.target_path).wait()


def prepare_manifest(project: DbtProject = dbt_project, force: bool = False) -> Path:
    """The path of an up-to-date manifest, parsing the project first when forced, in development, or when the
    manifest is stale.

    Concurrent processes (test workers, a code server starting beside a run) parse once: the lock makes the
    others wait for the first one's manifest.
    """
    if force or using_dagster_dev() or manifest_is_stale(project):
        project.manifest_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(project.manifest_path.with_suffix(".lock")):
            # Another process may have parsed while this one waited for the lock.
            if force or using_dagster_dev() or manifest_is_stale(project):
                _parse(project)
    return project.manifest_path
