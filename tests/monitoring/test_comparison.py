"""The champion-against-challenger comparison: DeLong's AUCs and standard errors, checked against what they mean."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from dagster_project.defs.monitoring.comparison import compare_models, delong


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.2
    signal = y + rng.normal(0, 1.2, n)
    champion = signal + rng.normal(0, 0.8, n)
    challenger = signal + rng.normal(0, 0.5, n)  # less noise: the better model
    return y, champion, challenger


def test_the_aucs_are_scikit_learns_and_ties_count_half() -> None:
    y, champion, challenger = _rows(500, 1)
    aucs, _ = delong(y, champion, challenger)
    assert aucs == pytest.approx([roc_auc_score(y, champion), roc_auc_score(y, challenger)], abs=1e-12)
    rounded = np.round(champion)  # many ties
    assert delong(y, rounded)[0][0] == pytest.approx(roc_auc_score(y, rounded), abs=1e-12)


def test_the_standard_errors_match_the_spread_over_resamples() -> None:
    """The DeLong standard error of the difference is what the difference actually varies by, from one sample of
    rows to another, and it is smaller than the two AUCs' errors combined as if independent."""
    differences, se = [], []
    for seed in range(200):
        y, champion, challenger = _rows(400, seed)
        result = compare_models(y, champion, challenger)
        differences.append(result.difference)
        se.append(result.difference_standard_error)
    spread = float(np.std(differences))
    assert np.mean(se) == pytest.approx(spread, rel=0.2)
    y, champion, challenger = _rows(400, 0)
    result = compare_models(y, champion, challenger)
    assert result.difference_standard_error < np.hypot(result.champion_standard_error, result.challenger_standard_error)


def test_a_better_challenger_is_significant_on_enough_rows_and_equal_models_are_not() -> None:
    y, champion, challenger = _rows(5000, 7)
    better = compare_models(y, champion, challenger)
    assert better.difference > 0 and better.p_value < 0.001
    same = compare_models(y, champion, champion)
    assert same.difference == 0 and same.p_value == 1.0


def test_too_few_of_a_class_is_no_comparison() -> None:
    y = np.array([1] * 5 + [0] * 100)
    scores = np.linspace(0, 1, len(y))
    assert compare_models(y, scores, scores[::-1]) is None
