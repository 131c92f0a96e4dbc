"""The whole asset graph, snapshotted: an accidental change to a key or a dependency shows up in review.

After an intended change, regenerate the snapshot with `UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest
tests/test_asset_graph.py` and commit the diff with the change.
"""

import json
import os
from pathlib import Path

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def _graph() -> dict[str, dict[str, object]]:
    from dagster_project.definitions import defs as load_definitions

    defs = load_definitions()

    graph = {}
    for spec in defs.resolve_all_asset_specs():
        graph[spec.key.to_user_string()] = {
            "group": spec.group_name,
            "partitioned": spec.partitions_def is not None,
            "deps": sorted(dep.asset_key.to_user_string() for dep in spec.deps),
        }
    checks = defs.resolve_asset_graph().asset_check_keys
    for key in checks:
        asset = key.asset_key.to_user_string()
        if asset in graph:
            graph[asset].setdefault("checks", []).append(key.name)
    for node in graph.values():
        node["checks"] = sorted(node.get("checks", []))
    return dict(sorted(graph.items()))


def test_asset_graph_matches_the_snapshot() -> None:
    graph = _graph()
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(graph, indent=2) + "\n")
    # A missing snapshot fails like a changed one: a test that wrote its own expectation would always pass.
    assert SNAPSHOT.exists(), f"no snapshot at {SNAPSHOT}: generate it with UPDATE_SNAPSHOTS=1 and commit it"
    assert graph == json.loads(SNAPSHOT.read_text())


def test_every_layer_is_in_the_graph_and_flows_from_raw_data() -> None:
    graph = _graph()
    for key in (
        "raw/customers",
        "features/customer_features",
        "lake/customer_features",
        "offline_store/feature_snapshots",
        "offline_store/training_set",
        "ml/churn_model",
        "ml/champion_model",
        "scoring/batch_scores",
        "serving/online_store",
        "monitoring/drift_report",
    ):
        assert key in graph, key

    def upstream(key: str, seen: set[str]) -> set[str]:
        for dep in graph.get(key, {}).get("deps", []):
            if dep not in seen:
                seen.add(dep)
                upstream(dep, seen)
        return seen

    assert "raw/activity_events" in upstream("monitoring/drift_report", set())
    assert "offline_store/training_set" in upstream("ml/champion_model", set())
    assert "raw/activity_events" in upstream("serving/online_store", set())
    assert any(check for node in graph.values() for check in node["checks"] if "drift" in check)
