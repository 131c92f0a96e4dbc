"""The raw layer: one daily-partitioned asset per raw table, validated on the way into the lake."""

import datetime as dt
import hashlib
from collections.abc import Mapping

import dagster as dg
import pandas as pd

from dagster_project import asset_keys
from dagster_project import lake as lake_layout
from dagster_project.defs.ingestion import volume
from dagster_project.defs.ingestion.schemas import TableSpec
from dagster_project.defs.ingestion.sources import load_raw
from dagster_project.defs.ingestion.validation import QUARANTINE_SCHEMA, ValidationResult, validate
from dagster_project.resources import LakeResource, RawSourceResource, ThresholdsResource

VALID_ROWS_CHECK = "no_quarantined_rows"
QUARANTINE_SHARE_CHECK = "quarantine_share_below_threshold"
VOLUME_CHECK = "row_count_within_trailing_volume"
CORRECTED_METADATA = "corrected"
# The sensor that rebuilds what a corrected day makes stale (defs/automation/corrections.py), named for the log.
CORRECTIONS_SENSOR = "rebuild_after_corrections"


def content_fingerprint(frame: pd.DataFrame) -> str:
    """A hash of the kept rows, in order, values and column names: equal for an unchanged re-ingestion."""
    digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:32]


def _previous_fingerprint(context: dg.AssetExecutionContext, key: dg.AssetKey) -> str | None:
    """The fingerprint of the day's latest earlier materialization (None if it was never ingested)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[context.partition_key]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    entry = records[0].asset_materialization.metadata.get("content_fingerprint")
    return None if entry is None else str(entry.value)


def _check_results(
    key: dg.AssetKey, result: ValidationResult, max_share: float, verdict: volume.VolumeVerdict | None
) -> list[dg.AssetCheckResult]:
    by_check = dg.MetadataValue.json(result.failures_by_check)
    share = round(result.quarantined_share, 6)
    volume_results = []
    if verdict is not None:
        volume_results.append(
            dg.AssetCheckResult(
                asset_key=key,
                check_name=VOLUME_CHECK,
                passed=verdict.passed,
                severity=dg.AssetCheckSeverity.ERROR,
                description=verdict.explanation,
                metadata={
                    "rows_kept": verdict.rows,
                    "trailing_rows": dg.MetadataValue.json(list(verdict.trailing_rows)),
                    "floor": verdict.floor if verdict.floor is not None else "not judged",
                    "overridden": verdict.overridden,
                },
            )
        )
    return [
        *volume_results,
        dg.AssetCheckResult(
            asset_key=key,
            check_name=VALID_ROWS_CHECK,
            passed=result.rows_quarantined == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"rows_quarantined": result.rows_quarantined, "failures_by_check": by_check},
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name=QUARANTINE_SHARE_CHECK,
            passed=result.quarantined_share <= max_share,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"quarantined_share": share, "threshold": max_share},
        ),
    ]


def _volume_check_specs(key: dg.AssetKey, spec: TableSpec) -> list[dg.AssetCheckSpec]:
    if spec.min_volume_share is None:
        return []
    return [
        dg.AssetCheckSpec(
            VOLUME_CHECK,
            asset=key,
            blocking=True,  # a day of no or few rows must not reach dbt as a day of no activity
            description=f"The day keeps at least {spec.min_volume_share:.0%} of the median row count of the "
            f"{volume.TRAILING_DAYS} days before it. A day that really is empty: run it with the tag "
            f"{volume.ACCEPT_LOW_VOLUME_TAG}={spec.name}.",
        )
    ]


def _volume_verdict(
    context: dg.AssetExecutionContext, lake: LakeResource, spec: TableSpec, date: dt.date, result: ValidationResult
) -> volume.VolumeVerdict | None:
    if spec.min_volume_share is None:
        return None
    return volume.VolumeVerdict(
        rows=result.rows_kept,
        trailing_rows=volume.trailing_row_counts(lake.root_path, lake_layout.RAW, spec.name, date),
        min_share=spec.min_volume_share,
        overridden=volume.accepts_low_volume(context.run.tags, spec.name),
    )


def build_raw_asset(
    spec: TableSpec, partitions: dg.PartitionsDefinition, tables: Mapping[str, TableSpec]
) -> dg.AssetsDefinition:
    """The raw asset of one declared table, over ``partitions``; ``tables``, every table of the problem, lets a
    file in the wrong folder be named as such."""
    key = asset_keys.raw_table(spec.name)

    @dg.asset(
        key=key,
        partitions_def=partitions,
        group_name=asset_keys.INGESTION_GROUP,
        kinds={"pandas", "parquet"},
        description=(
            f"Raw `{spec.name}` of one day, validated against the pandera schema of its declaration "
            f"(`{spec.declared_in}`). "
            f"Valid rows land in `lake/{lake_layout.RAW}/{spec.name}/date=<day>`; rows that fail a check go to "
            f"`lake/{lake_layout.QUARANTINE}/{spec.name}/date=<day>` with the failed checks and columns named (the "
            "two in one commit)."
        ),
        check_specs=[
            dg.AssetCheckSpec(VALID_ROWS_CHECK, asset=key, description="Every row of the day passed validation."),
            dg.AssetCheckSpec(
                QUARANTINE_SHARE_CHECK,
                asset=key,
                description="At most `thresholds.max_quarantine_share` of the day's rows were quarantined "
                "(PLATFORM_THRESHOLDS__MAX_QUARANTINE_SHARE; the value in force is in each result's metadata).",
            ),
            *_volume_check_specs(key, spec),
        ],
        metadata={"keys": ", ".join(spec.keys), "columns": ", ".join(spec.columns)},
    )
    def _raw_table(
        context: dg.AssetExecutionContext,
        lake: LakeResource,
        raw_source: RawSourceResource,
        thresholds: ThresholdsResource,
    ) -> dg.MaterializeResult:
        date = dt.date.fromisoformat(context.partition_key)
        frame, source = load_raw(raw_source, spec, date)
        result = validate(frame, spec, date, source, tables.values())
        data_path, quarantine_path = lake.write_raw_day(
            spec.name, date, result.valid, spec.arrow_schema(), result.quarantine, QUARANTINE_SCHEMA
        )
        verdict = _volume_verdict(context, lake, spec, date, result)
        fingerprint = content_fingerprint(result.valid)
        previous = _previous_fingerprint(context, key)
        corrected = previous is not None and previous != fingerprint
        if corrected:
            context.log.warning(
                f"{spec.name} on {date} differs from its previous ingestion: the features of the later days read "
                f"it too (the `{CORRECTIONS_SENSOR}` sensor requests their rebuild)"
            )
        if result.rows_quarantined:
            context.log.warning(
                f"{result.rows_quarantined} of {result.rows_in} rows of {spec.name} on {date} quarantined: "
                f"{result.failures_by_check}"
            )
        return dg.MaterializeResult(
            metadata={
                "source": source,
                "rows_in": result.rows_in,
                "rows_kept": result.rows_kept,
                "rows_quarantined": result.rows_quarantined,
                "failures_by_check": dg.MetadataValue.json(result.failures_by_check),
                "values_normalized": dg.MetadataValue.json(result.values_normalized),
                "path": dg.MetadataValue.path(str(data_path)),
                "quarantine_path": dg.MetadataValue.path(str(quarantine_path)),
                "dagster/row_count": result.rows_kept,
                "content_fingerprint": fingerprint,
                # A day ingested before with other content: what was built from the old content is stale.
                CORRECTED_METADATA: corrected,
            },
            data_version=dg.DataVersion(fingerprint),
            check_results=_check_results(key, result, thresholds.max_quarantine_share, verdict),
        )

    return _raw_table


def build_raw_assets(tables: Mapping[str, TableSpec], partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """One raw asset per declared table (``schemas.table_specs``), over ``partitions``."""
    return [build_raw_asset(spec, partitions, tables) for spec in tables.values()]
