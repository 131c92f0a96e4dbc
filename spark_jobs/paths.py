"""The offline store's own tables, under a store root the caller gives.

Why only these: ``spark_jobs`` sits below every other package and imports none of them, so its jobs run alone
(tests, benchmarks, another orchestrator) on paths they are handed. The lake's layout (its layers, the dbt
exports' ``date=YYYY-MM-DD/part-0.parquet`` files) is the platform's business and is defined once, in
``dagster_project.lake``; the Dagster assets build the exact input paths from it and pass them in. What the jobs
own is the inside of their store: the names of the two Delta tables and of the protected-versions file, here.
"""

from __future__ import annotations

from dataclasses import dataclass

from spark_jobs.object_store import Location, join

FEATURE_SNAPSHOTS = "feature_snapshots"
TRAINING_SET = "training_set"
# Versions that models still reference; written by the ML side, read by maintenance (see spark_jobs.maintenance).
PROTECTED_VERSIONS_FILE = "_protected_versions.json"


@dataclass(frozen=True, kw_only=True)
class OfflineStorePaths:
    """The tables of one offline store, in a local folder or under an ``s3://`` prefix (then each is a URI
    string). Keyword-only, so a lake root passed by mistake fails loudly."""

    store_root: Location

    @property
    def feature_snapshots(self) -> Location:
        return join(self.store_root, FEATURE_SNAPSHOTS)

    @property
    def training_set(self) -> Location:
        return join(self.store_root, TRAINING_SET)

    @property
    def protected_versions_file(self) -> Location:
        return join(self.store_root, PROTECTED_VERSIONS_FILE)
