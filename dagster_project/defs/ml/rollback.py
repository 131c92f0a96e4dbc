"""Roll the champion back to a named registered version, from the command line.

    python -m dagster_project.defs.ml.rollback --list
    python -m dagster_project.defs.ml.rollback --version 3 --reason "v4 over-predicts after the price rise"

The same as launching the Dagster job ``rollback_champion`` with ``version: 3``. The next scoring run loads
``models:/<model_name>@champion`` and so uses version 3. Only versions that once passed the promotion gate
qualify unless ``--force`` is given. If the platform's Dagster instance exists (``<data_root>/dagster``), the
change is also recorded there as a materialization of ``ml/champion_model``, so the UI's history stays complete.
"""

from __future__ import annotations

import argparse
import sys

from dagster_project.defs.ml import registry, tracking
from dagster_project.resources import MlflowResource
from dagster_project.settings import Settings, get_settings


def list_versions(store: MlflowResource) -> str:
    """One line per registered version: aliases, gate decision, validation ROC AUC, training-set version."""
    client = store.client()
    versions = sorted(client.search_model_versions(f"name='{store.model_name}'"), key=lambda v: int(v.version))
    if not versions:
        return f"no versions of {store.model_name!r} at {store.tracking_uri}"
    lines = [f"{'version':>7}  {'aliases':<22} {'gate':<14} {'roc_auc':>8}  training_set  registered"]
    for v in versions:
        auc = v.tags.get("metric.roc_auc")
        lines.append(
            f"{v.version:>7}  {','.join(v.aliases) or '-':<22} {v.tags.get('promotion.decision', '-'):<14} "
            f"{float(auc) if auc else float('nan'):>8.4f}  v{v.tags.get(tracking.TAG_TRAINING_SET_VERSION, '?'):<11} "
            f"{v.tags.get('run_id', '')[:8]}"
        )
    return "\n".join(lines)


def record_in_dagster(settings: Settings, result: registry.RollbackResult, store: MlflowResource) -> bool:
    """Record the change as a materialization of ``ml/champion_model`` in the platform's Dagster instance."""
    import dagster as dg

    from dagster_project.defs.ml.assets import rollback_materialization

    home = settings.dagster_home
    if home is None or not home.is_dir():
        return False
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.report_runless_asset_event(rollback_materialization(result, store, "command line"))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dagster_project.defs.ml.rollback", description=__doc__)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--version", type=int, help="the registered version to make champion")
    target.add_argument("--list", action="store_true", help="list the registered versions and exit")
    parser.add_argument("--reason", default="manual rollback from the command line")
    parser.add_argument("--force", action="store_true", help="allow a version that never passed the promotion gate")
    args = parser.parse_args(argv)

    settings = get_settings()
    store = MlflowResource.from_settings(settings)
    if args.list:
        print(list_versions(store))
        return 0
    try:
        result = registry.rollback_champion(store, args.version, args.reason, args.force, lake_root=settings.lake_root)
    except (LookupError, registry.RollbackRefusedError) as error:
        print(f"rollback refused: {error}", file=sys.stderr)
        return 2
    recorded = record_in_dagster(settings, result, store)
    print(
        f"{result.name}@champion: v{result.previous_version or '-'} -> v{result.version}"
        f"{' (recorded in Dagster)' if recorded else ''}. The next scoring run uses v{result.version}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
