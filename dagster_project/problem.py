"""The problem a team declared, read once from its dbt project: the manifest, the contract and the raw tables.

A problem is a folder (``settings.problem_dir``; the bundled examples live in ``examples/``) holding the team's dbt
models: its raw tables as the ``raw`` source, with their columns, types and checks in ``meta``; the feature model
(``meta: {role: features}``); the label model (``meta: {role: labels}``). The platform's dbt project
(``dbt_project/``) adds its own macros and models and reads the problem's models from that folder.

The manifest is generated, never committed: one per problem, ``dbt_project/target/<problem>/manifest.json``. It
is parsed when the definitions load in development (``dagster dev``) and whenever it is missing or older than the
files it is parsed from (a fresh clone, an edited model), so the definitions always match the SQL. CI and
deployments prepare it ahead: ``make manifest`` (``python -m dagster_project.cli manifest``).

Everything downstream takes its names from ``Problem.contract`` (``spark_jobs.contract.Contract``). A missing or
inconsistent declaration fails here, when the definitions load, with the model and the field named.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from dagster_dbt import DbtCliResource, DbtProject
from dagster_dbt.dbt_project import using_dagster_dev
from filelock import FileLock

from dagster_project.settings import DBT_PROJECT_DIR, Settings
from spark_jobs.contract import CATEGORICAL, NUMERIC, Contract, Feature

# The dbt source that holds the raw tables, whatever the problem.
RAW_SOURCE = "raw"
FEATURES_ROLE = "features"
LABELS_ROLE = "labels"
# The environment variable through which dbt learns where the problem's models are (dbt_project.yml).
PROBLEM_DIR_VARIABLE = "PLATFORM_PROBLEM_DIR"
# What a manifest is parsed from, in the platform's dbt project and in the problem's folder.
_PLATFORM_SOURCES = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests")
_PROBLEM_SOURCES = ("models",)
# dbt data types read as text: a feature of one of them is categorical unless its meta says otherwise.
_TEXT_TYPES = ("varchar", "text", "string", "char", "bool")


class DeclarationError(ValueError):
    """The problem's dbt project does not declare what the platform needs, or declares it twice."""


def dbt_project(problem_dir: Path) -> DbtProject:
    """The platform's dbt project on the problem in ``problem_dir``, with the problem's own target folder.

    No dbt target is named: parsing uses the profile's default (profiles.yml reads PLATFORM_DBT_TARGET), and every
    run names the one of the settings in force (``DbtResource``)."""
    return DbtProject(
        project_dir=DBT_PROJECT_DIR,
        profiles_dir=DBT_PROJECT_DIR,
        target_path=Path("target") / problem_dir.name,
    )


def _newest_mtime(folders: list[Path]) -> float:
    newest = 0.0
    for path in folders:
        if not path.exists():
            continue
        files = [path] if path.is_file() else (p for p in path.rglob("*") if p.is_file())
        for file in files:
            newest = max(newest, file.stat().st_mtime)
    return newest


def manifest_is_stale(project: DbtProject, problem_dir: Path) -> bool:
    """Whether the manifest is missing, older than a file it is parsed from, or parsed for another folder."""
    manifest = project.manifest_path
    if not manifest.exists():
        return True
    sources = [project.project_dir / n for n in _PLATFORM_SOURCES] + [problem_dir / n for n in _PROBLEM_SOURCES]
    if manifest.stat().st_mtime < _newest_mtime(sources):
        return True
    parsed_for = manifest.with_name("problem_dir.txt")
    return not parsed_for.exists() or parsed_for.read_text() != str(problem_dir)


def _parse(project: DbtProject, problem_dir: Path) -> None:
    from dagster_project.resources import DBT_EXECUTABLE, environment

    dbt = DbtCliResource(project_dir=project, dbt_executable=DBT_EXECUTABLE)
    with environment(problem_environment(problem_dir, project.project_dir)):
        dbt.cli(["parse", "--quiet"], target_path=project.target_path).wait()
    project.manifest_path.with_name("problem_dir.txt").write_text(str(problem_dir))


def prepare_manifest(project: DbtProject, problem_dir: Path, force: bool = False) -> Path:
    """The path of an up-to-date manifest of the problem, parsing first when forced, in development, or when the
    manifest is stale.

    Concurrent processes (test workers, a code server starting beside a run) parse once: the lock makes the others
    wait for the first one's manifest.
    """
    if force or using_dagster_dev() or manifest_is_stale(project, problem_dir):
        project.manifest_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(project.manifest_path.with_suffix(".lock")):
            # Another process may have parsed while this one waited for the lock.
            if force or using_dagster_dev() or manifest_is_stale(project, problem_dir):
                _parse(project, problem_dir)
    return project.manifest_path


# --- reading the declaration --------------------------------------------------------------------------------------


def _meta(node: Mapping[str, Any]) -> dict[str, Any]:
    return {**(node.get("meta") or {}), **((node.get("config") or {}).get("meta") or {})}


def _models_with_role(manifest: Mapping[str, Any], role: str, where: str) -> Mapping[str, Any]:
    found = [n for n in manifest["nodes"].values() if n["resource_type"] == "model" and _meta(n).get("role") == role]
    if len(found) != 1:
        names = ", ".join(sorted(n["name"] for n in found)) or "none"
        raise DeclarationError(f"{where}: exactly one dbt model must declare meta role: {role}; found {names}")
    return found[0]


def _required(model: Mapping[str, Any], meta: Mapping[str, Any], field: str) -> Any:
    value = meta.get(field)
    if value in (None, "", []):
        raise DeclarationError(f"model {model['name']} ({model['original_file_path']}): meta {field} is missing")
    return value


def _column_names(model: Mapping[str, Any], names: list[str], field: str) -> None:
    declared = set(model.get("columns") or {})
    missing = [n for n in names if n not in declared]
    if missing:
        raise DeclarationError(
            f"model {model['name']} ({model['original_file_path']}): meta {field} names {missing}, which are not "
            f"among its declared columns"
        )


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def _features(model: Mapping[str, Any]) -> tuple[Feature, ...]:
    features = []
    for name, column in (model.get("columns") or {}).items():
        meta = _meta(column)
        if not meta.get("feature"):
            continue
        data_type = str(column.get("data_type") or "").lower()
        if not data_type and "kind" not in meta:
            raise DeclarationError(
                f"model {model['name']}: feature {name} needs a data_type or meta kind (numeric or categorical)"
            )
        kind = meta.get("kind") or (CATEGORICAL if data_type.startswith(_TEXT_TYPES) else NUMERIC)
        try:
            features.append(Feature(name, str(kind)))
        except ValueError as error:
            raise DeclarationError(f"model {model['name']}: {error}") from None
    return tuple(features)


def read_contract(manifest: Mapping[str, Any], where: str, horizon_override: int | None = None) -> Contract:
    """The contract declared by the feature and label models of ``manifest`` (``where``: the problem, for
    messages). ``horizon_override`` replaces the label model's declared horizon (a setting, for short stories)."""
    features = _models_with_role(manifest, FEATURES_ROLE, where)
    labels = _models_with_role(manifest, LABELS_ROLE, where)
    fmeta, lmeta = _meta(features), _meta(labels)
    entity = _as_list(_required(features, fmeta, "entity"))
    label_entity = _as_list(lmeta.get("entity") or entity)
    if label_entity != entity:
        raise DeclarationError(
            f"model {labels['name']}: meta entity {label_entity} differs from {features['name']}'s {entity}"
        )
    as_of = str(_required(features, fmeta, "timestamp"))
    label_as_of = str(_required(labels, lmeta, "timestamp"))
    prediction_time = str(_required(labels, lmeta, "prediction_time"))
    label = str(_required(labels, lmeta, "label"))
    top_risk = _as_list(fmeta.get("top_risk_columns") or [])
    _column_names(features, [*entity, as_of, *top_risk], "entity, timestamp or top_risk_columns")
    _column_names(labels, [*entity, label_as_of, prediction_time, label], "entity, timestamp, prediction_time or label")
    declared_horizon = _required(labels, lmeta, "horizon_days") if horizon_override is None else horizon_override
    try:
        horizon = int(declared_horizon)
    except (TypeError, ValueError):
        raise DeclarationError(
            f"model {labels['name']}: meta horizon_days must be whole days, got {declared_horizon!r}"
        ) from None
    bands = fmeta.get("risk_bands") or {}
    try:
        return Contract(
            entity=tuple(entity),
            features_model=features["name"],
            as_of=as_of,
            features=_features(features),
            feature_set_version=str(fmeta.get("feature_set_version", "")),
            labels_model=labels["name"],
            label_as_of=label_as_of,
            prediction_time=prediction_time,
            label=label,
            horizon_days=horizon,
            top_risk_columns=tuple(top_risk),
            risk_bands=(float(bands.get("medium", 0.1)), float(bands.get("high", 0.3))),
            source=where,
        )
    except ValueError as error:
        raise DeclarationError(str(error)) from None


def raw_table_nodes(manifest: Mapping[str, Any], where: str) -> list[Mapping[str, Any]]:
    """The declared raw tables (the ``raw`` source's tables), in the order of the declaration."""
    nodes = [s for s in manifest["sources"].values() if s["source_name"] == RAW_SOURCE]
    if not nodes:
        raise DeclarationError(f"{where}: no raw table is declared (a dbt source named {RAW_SOURCE!r})")
    return nodes


@dataclass(frozen=True)
class Problem:
    """A problem as the definitions see it: its folder, its dbt project and manifest, and what they declare."""

    directory: Path
    project: DbtProject
    manifest: Mapping[str, Any]
    contract: Contract

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def raw_tables(self) -> list[Mapping[str, Any]]:
        return raw_table_nodes(self.manifest, str(self.directory))


@cache
def _load(problem_dir: Path, horizon_override: int | None) -> Problem:
    project = dbt_project(problem_dir)
    manifest = json.loads(prepare_manifest(project, problem_dir).read_text())
    contract = read_contract(manifest, str(problem_dir), horizon_override)
    return Problem(directory=problem_dir, project=project, manifest=manifest, contract=contract)


def load_problem(settings: Settings) -> Problem:
    """The problem of ``settings``, read once per process (the manifest is parsed first if it is stale)."""
    problem_dir = settings.problem_dir
    if not (problem_dir / "models").is_dir():
        raise DeclarationError(
            f"{PROBLEM_DIR_VARIABLE}={problem_dir} is not a problem folder: it has no models/ folder of dbt models"
        )
    return _load(problem_dir, settings.thresholds.churn_horizon_days)


def problem_environment(problem_dir: Path, project_dir: Path = DBT_PROJECT_DIR) -> dict[str, str]:
    """What a dbt process needs in its environment to read the problem's models: the folder relative to the
    repository root, as dbt_project.yml reads it.

    Never an absolute path: dbt writes each model's compiled SQL to ``<target>/compiled/<project>/<the model's
    path>``, and an absolute model path replaces that whole prefix, so dbt would write the compiled SQL over the
    model's own file. A relative path keeps the compiled SQL below the run's target folder."""
    return {PROBLEM_DIR_VARIABLE: os.path.relpath(problem_dir, Path(project_dir).parent)}
