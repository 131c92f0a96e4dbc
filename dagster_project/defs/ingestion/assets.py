"""The raw layer: one daily-partitioned asset per raw table, validated on the way into the lake."""

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from dagster_project import asset_keys
from dagster_project import lake as lake_layout
from dagster_project.defs.ingestion import volume
from dagster_project.defs.ingestion.schemas import TableSpec
from dagster_project.defs.ingestion.sources import load_raw
from dagster_project.defs.ingestion.validation import QUARANTINE_SCHEMA, ValidationResult, validate
from dagster_project.partitions import ranged_asset
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


def _previous_fingerprint(context: dg.AssetExecutionContext, key: dg.AssetKey, day: str) -> str | None:
    """The fingerprint of the day's latest earlier materialization (None if it was never ingested)."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    entry = records[0].asset_materialization.metadata.get("content_fingerprint")
    return None if entry is None else str(entry.value)


@dataclass(frozen=True)
class IngestedDay:
    """What one day of one raw table came to: its validation, its volume verdict, its partition's metadata."""

    day: dt.date
    result: ValidationResult
    verdict: volume.VolumeVerdict | None
    fingerprint: str
    metadata: dict[str, Any]


def _by_day(days: Sequence[IngestedDay], value: Callable[[IngestedDay], Any]) -> dg.MetadataValue:
    return dg.MetadataValue.json({str(d.day): value(d) for d in days})


def _check_results(
    key: dg.AssetKey, days: Sequence[IngestedDay], max_share: float, judges_volume: bool
) -> list[dg.AssetCheckResult]:
    """The checks of the run's days. A check result belongs to a run, not to a partition: in a run over a range of
    days (a backfill) each check judges every day, fails when one day fails, and names the failing days; in the
    nightly run of one day it is that day's verdict."""
    quarantined = [d for d in days if d.result.rows_quarantined]
    too_many = [d for d in days if d.result.quarantined_share > max_share]
    volume_results = []
    if judges_volume:
        verdicts = [d for d in days if d.verdict is not None]
        low = [d for d in verdicts if not d.verdict.passed]  # type: ignore[union-attr]
        last = verdicts[-1].verdict if verdicts else None
        explanation = "; ".join(f"{d.day}: {d.verdict.explanation}" for d in low) or (  # type: ignore[union-attr]
            last.explanation if last is not None and len(days) == 1 else f"every day of {_span(days)} passed"
        )
        volume_results.append(
            dg.AssetCheckResult(
                asset_key=key,
                check_name=VOLUME_CHECK,
                passed=not low,
                severity=dg.AssetCheckSeverity.ERROR,
                description=explanation,
                metadata=_volume_metadata(days, verdicts),
            )
        )
    return [
        *volume_results,
        dg.AssetCheckResult(
            asset_key=key,
            check_name=VALID_ROWS_CHECK,
            passed=not quarantined,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "days": _span(days),
                "rows_quarantined": sum(d.result.rows_quarantined for d in days),
                "failures_by_check": dg.MetadataValue.json(_merged_failures(days)),
                "days_with_quarantined_rows": ", ".join(str(d.day) for d in quarantined) or "none",
            },
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name=QUARANTINE_SHARE_CHECK,
            passed=not too_many,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "days": _span(days),
                "quarantined_share": max(round(d.result.quarantined_share, 6) for d in days),
                "threshold": max_share,
                "days_above_threshold": ", ".join(str(d.day) for d in too_many) or "none",
            },
        ),
    ]


def _volume_metadata(days: Sequence[IngestedDay], verdicts: Sequence[IngestedDay]) -> dict[str, Any]:
    """A night's verdict in full (the trailing row counts it was judged on); a range's, day by day."""
    overridden = any(d.verdict.overridden for d in verdicts)  # type: ignore[union-attr]
    if len(days) == 1 and verdicts:
        verdict = verdicts[0].verdict
        assert verdict is not None
        return {
            "rows_kept": verdict.rows,
            "trailing_rows": dg.MetadataValue.json(list(verdict.trailing_rows)),
            "floor": verdict.floor if verdict.floor is not None else "not judged",
            "overridden": overridden,
        }
    low = [d for d in verdicts if not d.verdict.passed]  # type: ignore[union-attr]
    return {
        "days": _span(days),
        "days_below_floor": ", ".join(str(d.day) for d in low) or "none",
        "rows_kept": _by_day(days, lambda d: d.result.rows_kept),
        "floor": _by_day(days, lambda d: d.verdict.floor if d.verdict else None),
        "overridden": overridden,
    }


def _span(days: Sequence[IngestedDay]) -> str:
    first, last = days[0].day, days[-1].day
    return str(first) if first == last else f"{first}..{last}"


def _merged_failures(days: Sequence[IngestedDay]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for d in days:
        for check, count in d.result.failures_by_check.items():
            merged[check] = merged.get(check, 0) + int(count)
    return merged


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
        trailing_rows=volume.trailing_row_counts(lake.location, lake_layout.RAW, spec.name, date),
        min_share=spec.min_volume_share,
        overridden=volume.accepts_low_volume(context.run.tags, spec.name),
    )


def build_raw_asset(
    spec: TableSpec, partitions: dg.PartitionsDefinition, tables: Mapping[str, TableSpec]
) -> dg.AssetsDefinition:
    """The raw asset of one declared table, over ``partitions``; ``tables``, every table of the problem, lets a
    file in the wrong folder be named as such."""
    key = asset_keys.raw_table(spec.name)

    @ranged_asset(
        key=key,
        partitions_def=partitions,
        group_name=asset_keys.INGESTION_GROUP,
        kinds={"pandas", "parquet"},
        description=(
            f"Raw `{spec.name}` of each day of the run (one night, or up to a month in a backfill), validated "
            f"against the pandera schema of its declaration (`{spec.declared_in}`). "
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
        # In order: a day's volume verdict reads the kept rows of the days before it, earlier days of the run too.
        days = [_ingest_day(context, lake, raw_source, dt.date.fromisoformat(k)) for k in context.partition_keys]
        for day in days:
            context.add_asset_metadata(day.metadata, partition_key=str(day.day))
        return dg.MaterializeResult(
            # A data version is the run's, for every partition it materializes: the day's fingerprint in a nightly
            # run; in a run over a range, each day's fingerprint is in its own metadata only.
            data_version=dg.DataVersion(days[0].fingerprint) if len(days) == 1 else None,
            check_results=_check_results(
                key, days, thresholds.max_quarantine_share, judges_volume=spec.min_volume_share is not None
            ),
        )

    def _ingest_day(
        context: dg.AssetExecutionContext, lake: LakeResource, raw_source: RawSourceResource, date: dt.date
    ) -> IngestedDay:
        frame, source = load_raw(raw_source, spec, date)
        result = validate(frame, spec, date, source, tables.values())
        data_path, quarantine_path = lake.write_raw_day(
            spec.name, date, result.valid, spec.arrow_schema(), result.quarantine, QUARANTINE_SCHEMA
        )
        verdict = _volume_verdict(context, lake, spec, date, result)
        fingerprint = content_fingerprint(result.valid)
        previous = _previous_fingerprint(context, key, str(date))
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
        metadata = {
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
        }
        return IngestedDay(date, result, verdict, fingerprint, metadata)

    return _raw_table


def build_raw_assets(tables: Mapping[str, TableSpec], partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """One raw asset per declared table (``schemas.table_specs``), over ``partitions``."""
    return [build_raw_asset(spec, partitions, tables) for spec in tables.values()]
