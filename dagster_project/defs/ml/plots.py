"""The diagnostic plots logged with every model run: ROC, precision-recall, calibration and feature importance."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from sklearn.calibration import CalibrationDisplay
from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

from dagster_project.defs.ml.training import TrainingResult

# Figures are built with matplotlib's object API, never pyplot: no display backend is needed on servers or in run
# workers, and no global figure registry keeps them alive after they are logged.


def _axes(width: float = 5, height: float = 5) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots()


def roc_curve_figure(result: TrainingResult) -> Figure:
    fig, ax = _axes()
    RocCurveDisplay.from_predictions(result.y_validation, result.validation_scores, ax=ax, name="validation")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ax.set_title(f"ROC, validation {result.split.validation_start}..{result.split.validation_end}")
    return fig


def precision_recall_figure(result: TrainingResult) -> Figure:
    fig, ax = _axes()
    PrecisionRecallDisplay.from_predictions(result.y_validation, result.validation_scores, ax=ax, name="validation")
    ax.axhline(float(np.mean(result.y_validation)), linestyle="--", color="grey", linewidth=1, label="base rate")
    ax.set_title("Precision-recall, validation")
    return fig


def calibration_figure(result: TrainingResult) -> Figure:
    fig, ax = _axes()
    CalibrationDisplay.from_predictions(
        result.y_validation, result.validation_scores, n_bins=10, strategy="quantile", ax=ax, name="validation"
    )
    ax.set_title("Calibration (quantile bins), validation")
    return fig


def feature_importance_figure(importances: pd.DataFrame, top: int = 25) -> Figure:
    shown = importances.head(top).iloc[::-1]
    fig, ax = _axes(6, max(3.0, 0.3 * len(shown) + 1))
    ax.barh(shown["feature"], shown["importance_mean"], xerr=shown["importance_std"], color="tab:blue")
    ax.set_xlabel("drop in ROC AUC when shuffled")
    ax.set_title("Permutation importance, validation sample")
    fig.tight_layout()
    return fig


def diagnostic_figures(result: TrainingResult, importances: pd.DataFrame) -> dict[str, Figure]:
    """Every plot, keyed by the artifact file name it is logged under."""
    return {
        "plots/roc_curve.png": roc_curve_figure(result),
        "plots/precision_recall_curve.png": precision_recall_figure(result),
        "plots/calibration_curve.png": calibration_figure(result),
        "plots/feature_importance.png": feature_importance_figure(importances),
    }
