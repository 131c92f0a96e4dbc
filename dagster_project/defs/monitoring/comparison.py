"""Champion against challenger on the same rows and their matured labels: both ROC AUCs, their standard errors and
the difference's, by DeLong's method.

The two models score the same entities, so their AUCs are correlated: two separate standard errors overstate the
uncertainty of the difference. DeLong, DeLong and Clarke-Pearson (1988) estimate the covariance of the two AUCs from
the same rows; the fast form (Sun and Xu, 2014) needs one ranking per model. Used by ``model_performance`` (the
batch shadow's scores) and by ``online_predictions`` (the prediction service's shadow log).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import rankdata

# Fewer positives or negatives than this among the shared rows and no comparison is made (as for the realized AUC).
MIN_CLASS_ROWS = 10


@dataclass(frozen=True)
class ModelComparison:
    """Champion and challenger on ``rows`` shared, labelled rows; the difference is challenger minus champion."""

    rows: int
    positives: int
    champion_roc_auc: float
    champion_standard_error: float
    challenger_roc_auc: float
    challenger_standard_error: float
    difference: float
    difference_standard_error: float
    z: float
    p_value: float  # two-sided: the chance of a difference this large if both models ranked equally well

    def as_metadata(self, digits: int = 6) -> dict[str, float | int]:
        return {
            k: (round(v, digits) if isinstance(v, float) and math.isfinite(v) else v) for k, v in asdict(self).items()
        }


def delong(labels: np.ndarray, *scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ROC AUC of each score vector and their covariance matrix (DeLong), on binary ``labels``."""
    y = np.asarray(labels).astype(bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"an AUC needs both classes: {positives} positives, {negatives} negatives")
    aucs, pos_components, neg_components = [], [], []
    for score in scores:
        score = np.asarray(score, dtype="float64")
        on_pos, on_neg = score[y], score[~y]
        overall = rankdata(np.concatenate([on_pos, on_neg]))
        within_pos, within_neg = rankdata(on_pos), rankdata(on_neg)
        aucs.append((overall[:positives].sum() - positives * (positives + 1) / 2) / (positives * negatives))
        # The share of negatives each positive outranks, and of positives each negative is outranked by.
        pos_components.append((overall[:positives] - within_pos) / negatives)
        neg_components.append(1.0 - (overall[positives:] - within_neg) / positives)
    covariance = (
        np.atleast_2d(np.cov(np.vstack(pos_components))) / positives
        + np.atleast_2d(np.cov(np.vstack(neg_components))) / negatives
    )
    return np.asarray(aucs), covariance


def compare_models(labels: np.ndarray, champion: np.ndarray, challenger: np.ndarray) -> ModelComparison | None:
    """Both AUCs on the same rows and the significance of their difference; None when a class is too rare to judge
    (``MIN_CLASS_ROWS``)."""
    y = np.asarray(labels).astype(bool)
    positives = int(y.sum())
    if min(positives, len(y) - positives) < MIN_CLASS_ROWS:
        return None
    aucs, covariance = delong(y, champion, challenger)
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    se = math.sqrt(max(variance, 0.0))
    difference = float(aucs[1] - aucs[0])
    z = difference / se if se > 0 else (math.copysign(math.inf, difference) if difference else 0.0)
    return ModelComparison(
        rows=len(y),
        positives=positives,
        champion_roc_auc=float(aucs[0]),
        champion_standard_error=math.sqrt(max(covariance[0, 0], 0.0)),
        challenger_roc_auc=float(aucs[1]),
        challenger_standard_error=math.sqrt(max(covariance[1, 1], 0.0)),
        difference=difference,
        difference_standard_error=se,
        z=z,
        p_value=float(math.erfc(abs(z) / math.sqrt(2))) if math.isfinite(z) else 0.0,
    )
