"""Permutation importance: the drop in validation ROC AUC when one raw input column is shuffled.

It is logged with every model, and the drift check reads its top features as the model's key features, so it must
be exactly scikit-learn's ``permutation_importance`` (scoring ``roc_auc``, the same seed). It was also the
slowest part of a training: 60 features and 3 repeats are 180 predictions of the validation sample, and each walks
all the trees (6 s a training in the main command's story, more than the fit).

Shuffling a column cannot change the output of a tree that never splits on it. For the gradient-boosting pipeline
of ``training.build_pipeline`` the sample is therefore encoded once, every tree's output on it is kept, and a
shuffled copy re-walks only the trees that split on the shuffled column; its raw score is summed tree by tree in
scikit-learn's own order (``BaseHistGradientBoosting._predict_iterations``), so it is the same float. The shuffles
are drawn as ``permutation_importance`` draws them. Before it is used, the path checks that its unshuffled scores
equal the pipeline's ``decision_function`` bit for bit; any other model, or a layout it does not know, goes
through scikit-learn's own function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from dagster_project.defs.ml.training import TrainingResult


def permutation_importances(result: TrainingResult) -> pd.DataFrame:
    """Drop in validation ROC AUC when one raw input column is shuffled, on a seeded sample of validation rows.

    Measured on the pipeline's input columns (before encoding), so each feature gets one figure whatever its
    encoding.
    """
    X, y = result.X_validation, result.y_validation
    n = min(result.params.importance_sample_rows, len(X))
    rows = np.random.default_rng(result.params.seed).choice(len(X), size=n, replace=False)
    rows.sort()
    sample, truth = X.iloc[rows], y[rows]
    repeats, seed = result.params.importance_repeats, result.params.seed
    trees = _EncodedTrees.of(result.pipeline, sample)
    if trees is not None:
        drops = trees.importances(truth, repeats, seed)
    else:
        # Hundreds of predictions on a small sample: OpenMP's thread start-up per call costs more than it saves, and
        # on a busy machine far more. One thread is faster here and leaves the cores to the rest of the run.
        with threadpool_limits(limits=1, user_api="openmp"):
            drops = permutation_importance(
                result.pipeline, sample, truth, scoring="roc_auc", n_repeats=repeats, random_state=seed
            ).importances
    return (
        pd.DataFrame({"feature": X.columns, "importance_mean": drops.mean(axis=1), "importance_std": drops.std(axis=1)})
        .sort_values("importance_mean", ascending=False, kind="mergesort")
        .reset_index(drop=True)
    )


@dataclass
class _EncodedTrees:
    """A gradient-boosting pipeline's trees on one encoded sample, with each tree's output on it."""

    encoded: np.ndarray  # the sample as the estimator reads it
    columns: list[int]  # the encoded column of each raw input column, in the sample's column order
    estimator: HistGradientBoostingClassifier
    outputs: list[np.ndarray]  # each tree's output on ``encoded``
    splits_on: list[frozenset[int]]  # the encoded columns each tree splits on
    known_bitsets: Any  # the categories seen in training, as the trees' code reads them
    f_idx_map: Any

    @classmethod
    def of(cls, pipeline: Any, sample: pd.DataFrame) -> _EncodedTrees | None:
        """The trees of ``pipeline`` on ``sample``, or None unless it is ``build_pipeline``'s gradient boosting (one
        encoded column per input column), shuffling a column of the sample shuffles one column of what the trees
        read, and the summed outputs equal the pipeline's ``decision_function`` to the bit."""
        steps = getattr(pipeline, "steps", None)
        if not steps or len(steps) != 2:
            return None
        preprocess, estimator = steps[0][1], steps[1][1]
        if not isinstance(preprocess, ColumnTransformer) or not isinstance(estimator, HistGradientBoostingClassifier):
            return None
        if estimator.n_trees_per_iteration_ != 1:
            return None
        names = list(preprocess.get_feature_names_out())
        if sorted(names) != sorted(sample.columns):  # one encoded column per input column, named after it
            return None

        def tree_input(frame: pd.DataFrame) -> np.ndarray:  # what ``_raw_predict`` hands the trees
            return estimator._preprocess_X(preprocess.transform(frame), reset=False)

        encoded = tree_input(sample)
        # The estimator encodes its categorical columns again and puts them first.
        mask = np.asarray(estimator.is_categorical_ if estimator.is_categorical_ is not None else [], dtype=bool)
        order = [*np.flatnonzero(mask), *np.flatnonzero(~mask)] if mask.any() else list(range(len(names)))
        position = {int(outer): inner for inner, outer in enumerate(order)}
        columns = [position[names.index(column)] for column in sample.columns]
        # The proof of that mapping: every column shuffled its own way, through the encoders and through the mapping.
        rng = np.random.default_rng(0)
        orders = [rng.permutation(len(sample)) for _ in columns]
        shuffled = sample.copy()
        mapped = encoded.copy()
        for name, column, shuffle in zip(sample.columns, columns, orders, strict=True):
            shuffled[name] = sample[name].to_numpy()[shuffle]
            mapped[:, column] = encoded[shuffle, column]
        if not np.array_equal(tree_input(shuffled), mapped, equal_nan=True):
            return None
        known_bitsets, f_idx_map = estimator._bin_mapper.make_known_categories_bitsets()
        trees = cls(encoded, columns, estimator, [], [], known_bitsets, f_idx_map)
        for (predictor,) in estimator._predictors:
            nodes = predictor.nodes
            trees.splits_on.append(frozenset(int(f) for f in nodes["feature_idx"][nodes["is_leaf"] == 0]))
            trees.outputs.append(trees._predict(predictor, encoded))
        if not np.array_equal(trees.raw({}), pipeline.decision_function(sample)):
            return None
        return trees

    def _predict(self, predictor: Any, encoded: np.ndarray) -> np.ndarray:
        return predictor.predict(encoded, self.known_bitsets, self.f_idx_map, 1)

    def raw(self, replaced: dict[int, np.ndarray]) -> np.ndarray:
        """The raw scores, the outputs of ``replaced`` trees (by index) swapped in: summed as scikit-learn sums."""
        raw = np.zeros((len(self.encoded), 1), dtype=self.estimator._baseline_prediction.dtype, order="F")
        raw += self.estimator._baseline_prediction
        for index, output in enumerate(self.outputs):
            raw[:, 0] += replaced.get(index, output)
        return raw.ravel()

    def importances(self, truth: np.ndarray, repeats: int, seed: int) -> np.ndarray:
        """``permutation_importance(...).importances``: one row per input column, one column per repeat."""
        baseline = roc_auc_score(truth, self.raw({}))
        # The draws of ``permutation_importance``: one seed for every column, and each column's shuffles drawn in
        # turn from it, the shuffled order kept from one repeat to the next.
        column_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
        drops = np.empty((len(self.columns), repeats))
        for position, column in enumerate(self.columns):
            state = np.random.RandomState(column_seed)
            order = np.arange(len(self.encoded))
            shuffled = self.encoded.copy()
            touched = [i for i, used in enumerate(self.splits_on) if column in used]
            for repeat in range(repeats):
                state.shuffle(order)
                shuffled[:, column] = shuffled[order, column]
                replaced = {i: self._predict(self.estimator._predictors[i][0], shuffled) for i in touched}
                drops[position, repeat] = baseline - roc_auc_score(truth, self.raw(replaced))
        return drops
