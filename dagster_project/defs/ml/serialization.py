"""Safe model serialization: skops, with exactly the types our pipelines need trusted, and nothing else.

MLflow 3 saves scikit-learn models with skops by default. Unlike pickle, skops loads only types it trusts; it
trusts scikit-learn's estimators and plain containers out of the box, but not ``HistGradientBoostingClassifier``'s
fitted trees (``TreePredictor``), its input-validation function, nor ``numpy.dtype`` objects, so
``mlflow.sklearn.log_model`` fails unless it is given ``skops_trusted_types``; MLflow records that list in the
model's ``MLmodel`` file and passes it to ``skops.io.load`` whenever the model is loaded.

Trusting "whatever the model contains" would make the check pointless. Instead, the types are listed here, each
with the reason it is safe; before a model is logged, its dump is inspected and any type outside this list stops
the run with an error naming it. A new estimator or transformer therefore needs a deliberate, reviewed entry
below, never a silent widening.
"""

from __future__ import annotations

from typing import Any

# Types skops does not trust by default but our pipelines legitimately contain, and why each is safe.
ALLOWED_UNTRUSTED_TYPES: dict[str, str] = {
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor": (
        "HistGradientBoostingClassifier's fitted trees: a plain container of numpy node arrays, no code"
    ),
    "numpy.dtype": "data types kept by the encoders and the predictor's node arrays: a description, no code",
    # With categorical features, scikit-learn 1.9's booster keeps an inner ColumnTransformer whose numeric branch
    # is FunctionTransformer(partial(check_array, ...)). skops checks the wrapped function on its own, so
    # trusting partial admits no other callable than the one listed next, and it only validates arrays.
    "functools.partial": "wraps sklearn's check_array in the booster's categorical preprocessing",
    "sklearn.utils.validation.check_array": "sklearn's input validation, called by the booster's preprocessing",
}


class UntrustedModelTypesError(TypeError):
    """The model holds types outside the reviewed allow-list: refuse to log it."""


def untrusted_types(model: Any) -> list[str]:
    """The types in ``model``'s skops dump that skops would not load without being told to trust them."""
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


def trusted_types_for(model: Any) -> list[str]:
    """The ``skops_trusted_types`` to log ``model`` with: its untrusted types, each checked against the allow-list.

    Raises ``UntrustedModelTypesError`` naming any type that is not on the list.
    """
    found = untrusted_types(model)
    unexpected = [t for t in found if t not in ALLOWED_UNTRUSTED_TYPES]
    if unexpected:
        raise UntrustedModelTypesError(
            f"the model contains types skops does not trust and this project has not reviewed: {unexpected}. "
            "If they are safe (no code runs when they load), add each to ALLOWED_UNTRUSTED_TYPES in "
            f"{__name__} with the reason; never switch the check off."
        )
    return found
