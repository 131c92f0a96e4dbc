"""Realized model performance: the scores of a day, judged once that day's labels have matured.

A label says what happened within the label horizon N after the prediction (the contract's), so the
scores of day D can be judged on day D + N at the earliest. The daily partition P of ``monitoring/model_performance``
therefore evaluates the scores of P - N against the labels of snapshot P - N, which matured with partition P.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from dagster_project import lake
from dagster_project.defs.monitoring.comparison import compare_models
from dagster_project.defs.scoring.scores import CHALLENGER_PROBABILITY, CHALLENGER_VERSION, PROBABILITY
from spark_jobs.contract import Contract
from spark_jobs.object_store import Location

# Below this many positives (or negatives) an AUC is too noisy to act on: the check is not evaluated.
MIN_CLASS_ROWS = 10

PERFORMANCE_SCHEMA = pa.schema(
    [
        pa.field("evaluated_on", pa.date32()),
        pa.field("scored_date", pa.date32()),
        pa.field("model_name", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("rows", pa.int64()),
        pa.field("positives", pa.int64()),
        pa.field("label_coverage", pa.float64()),
        pa.field("realized_roc_auc", pa.float64()),
        pa.field("roc_auc_standard_error", pa.float64()),
        pa.field("realized_pr_auc", pa.float64()),
        pa.field("brier", pa.float64()),
        pa.field("base_rate", pa.float64()),
        pa.field("mean_churn_probability", pa.float64()),
        pa.field("validation_roc_auc", pa.float64()),
        # Batch shadow: the challenger scored the same rows (null when none was shadowed, or too few labels).
        pa.field("challenger_version", pa.string()),
        pa.field("challenger_roc_auc", pa.float64()),
        pa.field("challenger_roc_auc_standard_error", pa.float64()),
        pa.field("champion_roc_auc_delong_standard_error", pa.float64()),
        pa.field("roc_auc_difference", pa.float64()),  # challenger - champion, on the rows both scored
        pa.field("roc_auc_difference_standard_error", pa.float64()),
        pa.field("roc_auc_difference_p_value", pa.float64()),
    ]
)


def read_matured_labels(
    lake_root: Location, snapshot_date: dt.date, contract: Contract, partitions: list[dt.date]
) -> pd.DataFrame:
    """The labels of ``snapshot_date`` found in the label export's ``partitions`` (missing partitions skipped).

    Rows are selected by the label model's day column, not by the folder they sit in, so this does not depend on
    which partition the export files a matured label under.
    """
    entity, label, day = list(contract.entity), contract.label, contract.label_as_of
    folders = dict.fromkeys(partitions)
    candidates = (lake.partition_path(lake_root, lake.FEATURES, contract.labels_model, d) for d in folders)
    files = [path for path in candidates if lake.exists(path)]
    empty = pd.DataFrame({**{c: pd.Series(dtype=object) for c in entity}, label: pd.Series(dtype="int64")})
    if not files:
        return empty
    dataset = ds.dataset([lake.read_parquet(f, columns=[*entity, day, label]) for f in files])
    table = dataset.to_table(filter=ds.field(day) == pa.scalar(snapshot_date, pa.date32()))
    frame = table.to_pandas()
    if frame.empty:
        return empty
    frame = frame.drop_duplicates(entity, keep="last")
    return frame[[*entity, label]].astype({label: "int64"}).reset_index(drop=True)


@dataclass(frozen=True)
class RealizedPerformance:
    """How the scores of ``scored_date`` did against their matured labels (``evaluated`` False: why not)."""

    evaluated_on: dt.date
    scored_date: dt.date
    evaluated: bool
    reason: str
    model_name: str | None = None
    model_version: str | None = None
    rows: int = 0
    positives: int = 0
    label_coverage: float = 0.0  # share of the day's scored entities that have a matured label
    realized_roc_auc: float | None = None
    roc_auc_standard_error: float | None = None
    realized_pr_auc: float | None = None
    brier: float | None = None
    base_rate: float | None = None
    mean_churn_probability: float | None = None
    validation_roc_auc: float | None = None
    challenger_version: str | None = None
    challenger_roc_auc: float | None = None
    challenger_roc_auc_standard_error: float | None = None
    champion_roc_auc_delong_standard_error: float | None = None
    roc_auc_difference: float | None = None
    roc_auc_difference_standard_error: float | None = None
    roc_auc_difference_p_value: float | None = None

    def as_record(self) -> dict[str, object]:
        record = asdict(self)
        return {name: record[name] for name in PERFORMANCE_SCHEMA.names}


def hanley_mcneil_se(auc: float, positives: int, negatives: int) -> float:
    """Standard error of a ROC AUC (Hanley & McNeil, 1982): how much it moves by chance at this sample size."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives
    )
    return math.sqrt(max(variance, 0.0))


def realized_performance(
    scores: pd.DataFrame, labels: pd.DataFrame, contract: Contract, *, evaluated_on: dt.date, scored_date: dt.date
) -> RealizedPerformance:
    """Join the scores of ``scored_date`` with their labels and measure them (ROC AUC, PR AUC, Brier)."""
    if scores.empty:
        return RealizedPerformance(
            evaluated_on, scored_date, False, f"no scores for {scored_date}: the day was not scored (no champion yet?)"
        )
    # Registry versions are numbers kept as strings: the newest is the largest number, not the last string ("10" > "9").
    versions = sorted(scores["model_version"].astype(str).unique(), key=lambda v: (int(v) if v.isdigit() else -1, v))
    name, version = str(scores["model_name"].iloc[0]), versions[-1]
    if labels.empty:
        return RealizedPerformance(
            evaluated_on,
            scored_date,
            False,
            f"no matured labels for {scored_date} yet (due {(evaluated_on - scored_date).days} days after it)",
            model_name=name,
            model_version=version,
        )
    joined = scores.merge(labels, on=list(contract.entity), how="inner", validate="one_to_one")
    y, p = joined[contract.label].to_numpy(), joined[PROBABILITY].to_numpy()
    positives, rows = int(y.sum()), len(joined)
    common = dict(
        model_name=name,
        model_version=version,
        rows=rows,
        positives=positives,
        label_coverage=rows / len(scores),
        base_rate=positives / rows if rows else None,
        mean_churn_probability=float(p.mean()) if rows else None,
    )
    if min(positives, rows - positives) < MIN_CLASS_ROWS:
        return RealizedPerformance(
            evaluated_on,
            scored_date,
            False,
            f"{positives} positives and {rows - positives} negatives among {rows} labelled entities: fewer "
            f"than {MIN_CLASS_ROWS} in a class, an AUC would be noise",
            **common,
        )
    auc = float(roc_auc_score(y, p))
    return RealizedPerformance(
        evaluated_on,
        scored_date,
        True,
        f"{rows} labelled entities, {positives} positive",
        realized_roc_auc=auc,
        roc_auc_standard_error=hanley_mcneil_se(auc, positives, rows - positives),
        realized_pr_auc=float(average_precision_score(y, p)),
        brier=float(brier_score_loss(y, p)),
        **common,
        **_shadow_comparison(joined, contract),
    )


def _shadow_comparison(joined: pd.DataFrame, contract: Contract) -> dict[str, object]:
    """The challenger against the champion on the labelled rows both scored (the batch shadow), or nothing."""
    if CHALLENGER_PROBABILITY not in joined.columns:
        return {}
    shadowed = joined[joined[CHALLENGER_PROBABILITY].notna()]
    versions = shadowed[CHALLENGER_VERSION].astype(str).unique()
    if len(versions) != 1:  # none shadowed, or a day re-scored under two challengers: no single comparison
        return {}
    y = shadowed[contract.label].to_numpy()
    comparison = compare_models(y, shadowed[PROBABILITY].to_numpy(), shadowed[CHALLENGER_PROBABILITY].to_numpy())
    if comparison is None:
        return {"challenger_version": str(versions[0])}
    return {
        "challenger_version": str(versions[0]),
        "challenger_roc_auc": comparison.challenger_roc_auc,
        "challenger_roc_auc_standard_error": comparison.challenger_standard_error,
        "champion_roc_auc_delong_standard_error": comparison.champion_standard_error,
        "roc_auc_difference": comparison.difference,
        "roc_auc_difference_standard_error": comparison.difference_standard_error,
        "roc_auc_difference_p_value": comparison.p_value,
    }


def performance_table(result: RealizedPerformance) -> pa.Table:
    record = {k: [v] for k, v in result.as_record().items()}
    return pa.Table.from_pydict(record, schema=PERFORMANCE_SCHEMA)


def within_tolerance(realized: float, validation: float, tolerance: float) -> bool:
    """The realized AUC is at least the validation AUC minus the tolerance (on its own, the old check: with tens
    of positives a day it is crossed by chance on several percent of calm days)."""
    return bool(np.isfinite(realized) and realized >= validation - tolerance)


@dataclass(frozen=True)
class PerformanceVerdict:
    """The performance check's verdict on one day and the figures behind it (what its metadata shows)."""

    passed: bool
    reason: str
    rule: str
    realized_roc_auc: float
    realized_standard_error: float
    validation_roc_auc: float
    validation_standard_error: float | None  # None: the model version recorded no validation counts
    tolerance: float
    significance_level: float
    shortfall: float  # validation AUC - realized AUC (negative: the day did better than validation)
    z: float
    p_value: float  # one-sided: the chance of a shortfall this large if the model performed as validated


def judge_realized_auc(
    realized: float,
    positives: int,
    negatives: int,
    validation: float,
    *,
    tolerance: float,
    significance_level: float,
    validation_positives: int | None = None,
    validation_negatives: int | None = None,
) -> PerformanceVerdict:
    """Fail only when the realized AUC trails the validation AUC by more than ``tolerance`` AND by more than
    chance explains: a one-sided z test of the shortfall (validation - realized) against the Hanley-McNeil
    standard errors of the realized AUC and, when its counts are known, of the validation AUC.

    The tolerance is the smallest drop worth a retrain; the test stops a day's noise from retraining. With a few
    thousand positives the standard error is small and the tolerance alone decides; with ~60 a day (SE ~0.035) a
    day must fall about 2.3 SEs short at the default level of 0.01 before the check fails, so a calm story fails
    on at most about 1 % of its days instead of several percent (``bench/performance_false_alarms.py``).
    """
    realized_se = hanley_mcneil_se(realized, positives, negatives) if np.isfinite(realized) else math.nan
    known = validation_positives is not None and validation_negatives is not None
    validation_se = hanley_mcneil_se(validation, validation_positives, validation_negatives) if known else None
    se = math.sqrt(realized_se**2 + (validation_se or 0.0) ** 2)
    shortfall = validation - realized
    # A perfect (or perfectly wrong) ranking has no standard error: the shortfall alone decides.
    z = shortfall / se if se > 0 else math.copysign(math.inf, shortfall) if shortfall else 0.0
    p_value = 0.5 * math.erfc(z / math.sqrt(2)) if np.isfinite(realized) else 0.0
    beyond_tolerance = not within_tolerance(realized, validation, tolerance)
    significant = p_value < significance_level
    floor = validation - tolerance
    rule = (
        f"fails when realized AUC < {validation:.4f} - {tolerance} = {floor:.4f} and the shortfall is significant: "
        f"one-sided p < {significance_level} (z = shortfall / SE, SE of the realized AUC"
        + (" and of the validation AUC" if known else "; the validation AUC's counts are not recorded")
        + ")"
    )
    figures = f"shortfall {shortfall:+.4f}, SE {se:.4f}, z {z:.2f}, p {p_value:.4g}"
    if not beyond_tolerance:
        reason = f"within the tolerance: {figures}, floor {floor:.4f}"
    elif not significant:
        reason = f"below the floor {floor:.4f} but not significant (p >= {significance_level}): {figures}"
    else:
        reason = f"below the floor {floor:.4f} and significant (p < {significance_level}): {figures}"
    return PerformanceVerdict(
        passed=not (beyond_tolerance and significant),
        reason=reason,
        rule=rule,
        realized_roc_auc=realized,
        realized_standard_error=realized_se,
        validation_roc_auc=validation,
        validation_standard_error=validation_se,
        tolerance=tolerance,
        significance_level=significance_level,
        shortfall=shortfall,
        z=z,
        p_value=p_value,
    )
