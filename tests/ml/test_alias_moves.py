"""Moving the ``champion`` alias: compare-and-set under one lock that the gate, the rollback command and the rollback
job share (real SQLite registry; the lock also on a real PostgreSQL server when one can be started)."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from synthetic_churn import synthetic_contract

from dagster_project.defs.ml import aliases, importance, registry, tracking
from dagster_project.defs.ml.training import TrainingParams, train_from_training_set
from dagster_project.resources import MlflowResource
from dagster_project.settings import REPO_ROOT, Settings

CONTRACT = synthetic_contract()


def _champion(store: MlflowResource) -> str | None:
    version = registry.version_by_alias(store, tracking.CHAMPION)
    return None if version is None else str(version.version)


def _gate(store: MlflowResource, settings: Settings) -> registry.PromotionDecision:
    return registry.run_promotion_gate(
        store,
        CONTRACT,
        auc_floor=settings.thresholds.auc_floor,
        tolerance=settings.thresholds.promotion_tolerance,
        lake_root=settings.lake_root,
    )


def test_a_rollback_while_the_gate_scores_is_kept_and_the_gate_says_why_it_did_not_promote(
    settings: Settings,
    mlflow_store: MlflowResource,
    training_set: tuple[Path, int],
    fast_params: TrainingParams,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One model registered three times: each version is as good as the others, so the gate promotes each in turn.
    result = train_from_training_set(str(training_set[0]), CONTRACT, training_set[1], fast_params)
    importances = importance.permutation_importances(result)

    def register() -> str:
        return tracking.log_and_register(result, mlflow_store, "test-run", importances=importances).version

    register()
    assert _gate(mlflow_store, settings).promoted
    register()
    assert _gate(mlflow_store, settings).promoted and _champion(mlflow_store) == "2"
    challenger = register()

    # While the gate scores v3 against v2, the operator rolls back to v1 with the documented command (a process of
    # its own): after the gate has read the champion, before it moves the alias.
    env = {**os.environ, "PLATFORM_DATA_ROOT": str(settings.data_root)}
    command = [sys.executable, "-m", "dagster_project.defs.ml.rollback", "--version", "1", "--reason", "v2 is off"]
    score_auc = registry.score_auc
    rollbacks: list[subprocess.CompletedProcess[str]] = []

    def score_while_rolling_back(*args: object) -> float:
        if not rollbacks:
            rollbacks.append(
                subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
            )
        return score_auc(*args)

    monkeypatch.setattr(registry, "score_auc", score_while_rolling_back)
    decision = _gate(mlflow_store, settings)
    assert rollbacks[0].returncode == 0, rollbacks[0].stderr
    assert "v2 -> v1" in rollbacks[0].stdout

    assert _champion(mlflow_store) == "1"  # the rollback stands
    assert (decision.promoted, decision.decision, decision.champion_version) == (False, "champion_moved", "2")
    assert f"champion moved from v2 to v1 while the gate ran; v{challenger} was not promoted" in decision.reason
    tags = mlflow_store.client().get_model_version(mlflow_store.model_name, challenger).tags
    assert tags["promotion.decision"] == "champion_moved" and "champion moved from v2 to v1" in tags["promotion.reason"]
    assert registry.TAG_PASSED not in tags and "champion.since" not in tags
    replaced = mlflow_store.client().get_model_version(mlflow_store.model_name, "1").tags["champion.replaced_by"]
    assert replaced == "2"  # by the first promotion, not by the one that did not happen

    # Run again, the gate judges v3 against the champion now in place, and may promote it.
    monkeypatch.setattr(registry, "score_auc", score_auc)
    again = _gate(mlflow_store, settings)
    assert (again.decision, again.champion_version, _champion(mlflow_store)) == ("promoted", "1", challenger)


def test_an_alias_moves_only_from_the_version_the_caller_expects(mlflow_store: MlflowResource, tmp_path: Path) -> None:
    client = mlflow_store.client()
    client.create_registered_model(mlflow_store.model_name)
    versions = [str(client.create_model_version(mlflow_store.model_name, source=str(tmp_path)).version) for _ in "abc"]
    assert versions == ["1", "2", "3"]

    # None expects no holder yet.
    assert aliases.move_alias(mlflow_store, tracking.CHAMPION, "1", expected=None) is None
    with pytest.raises(aliases.AliasMovedError, match="expected no version, found v1") as moved:
        aliases.move_alias(mlflow_store, tracking.CHAMPION, "2", expected=None)
    assert (moved.value.expected, moved.value.found) == (None, "1")
    with pytest.raises(aliases.AliasMovedError, match="expected v2, found v1"):
        aliases.move_alias(mlflow_store, tracking.CHAMPION, "3", expected="2")
    assert _champion(mlflow_store) == "1"
    assert aliases.move_alias(mlflow_store, tracking.CHAMPION, "3", expected="1") == "1"
    # A rollback states no expectation: it moves whatever holds the alias, and reports what that was.
    assert aliases.move_alias(mlflow_store, tracking.CHAMPION, "2") == "3"
    assert _champion(mlflow_store) == "2"


HOLDER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from dagster_project.defs.ml.aliases import registry_lock
    from dagster_project.resources import MlflowResource

    store = MlflowResource.model_validate_json(sys.argv[1])
    me, other = Path(sys.argv[2]), Path(sys.argv[3])
    Path(str(me) + ".waiting").write_text(str(time.time()))
    with registry_lock(store, f"test {me.name}"):
        acquired = time.time()
        Path(str(me) + ".holding").touch()
        # The first holder keeps the lock until the other process is waiting for it, then a little longer.
        while not Path(str(other) + ".waiting").exists():
            time.sleep(0.05)
        time.sleep(1.0)
        released = time.time()
    me.write_text(json.dumps({"acquired": acquired, "released": released}))
    """
)


def _contend(store: MlflowResource, folder: Path) -> tuple[dict[str, float], dict[str, float], float]:
    """Two processes take ``store``'s registry lock, the second while the first holds it: their holding times and
    when the second started waiting."""
    first, second = folder / "first", folder / "second"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    def start(me: Path, other: Path) -> subprocess.Popen[str]:
        argv = [sys.executable, "-c", HOLDER, store.model_dump_json(), str(me), str(other)]
        return subprocess.Popen(argv, env=env, cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)

    one = start(first, second)
    deadline = time.monotonic() + 120
    while not Path(f"{first}.holding").exists():
        assert one.poll() is None, one.communicate()[1]
        assert time.monotonic() < deadline, "the first process never took the lock"
        time.sleep(0.05)
    two = start(second, first)
    for process in (one, two):
        assert process.wait(timeout=120) == 0, process.communicate()[1]
    waited_from = float(Path(f"{second}.waiting").read_text())
    return json.loads(first.read_text()), json.loads(second.read_text()), waited_from


def test_two_processes_take_the_registry_lock_one_after_the_other(mlflow_store: MlflowResource, tmp_path: Path) -> None:
    held_first, held_second, waited_from = _contend(mlflow_store, tmp_path)
    assert held_second["acquired"] >= held_first["released"]
    assert held_second["acquired"] - waited_from >= 0.9  # it did wait for the first holder
    assert (
        Path(mlflow_store.registry_lock_file).parent
        == Path(mlflow_store.tracking_uri.removeprefix("sqlite:///")).parent
    )


@pytest.mark.xdist_group("deployed_platform")  # on the worker that already runs the suite's PostgreSQL server
def test_on_a_postgresql_backed_mlflow_the_lock_is_an_advisory_lock_in_its_database(
    postgres_server,  # the session fixture of tests/deployed_platform.py
    tmp_path: Path,
) -> None:
    store = MlflowResource(
        tracking_uri=postgres_server.url("postgres", driver="postgresql+psycopg2"),
        artifact_root=str(tmp_path / "artifacts"),
        experiment_name="churn_model",
        model_name="churn_model",
    )
    held_first, held_second, waited_from = _contend(store, tmp_path)
    assert held_second["acquired"] >= held_first["released"]
    assert held_second["acquired"] - waited_from >= 0.9
    assert not Path(store.registry_lock_file).exists()  # no file involved: the database holds the lock
