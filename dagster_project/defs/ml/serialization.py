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

The same list governs loading. The ``MLmodel`` file is part of the artifact: whoever can write a version's
artifacts could list any type there (``builtins.eval``, ``numpy.save``...) and MLflow's own loaders would trust it.
So the platform never loads through them with the artifact's list: ``verify_model_dir`` refuses a version whose
artifact asks for more than this list (or is pickled, or ships code), before anything of it is imported, and
``load_with_platform_trust`` hands skops this list, not the artifact's.
"""

from __future__ import annotations

from pathlib import Path
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


class UntrustedArtifactError(ValueError):
    """A registered model's artifact asks for more trust than the platform grants: refuse to load it."""


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


def verify_model_dir(model_dir: Path, label: str) -> None:
    """Check a downloaded MLflow model folder against the platform's trust before anything of it is loaded.

    Refused with ``UntrustedArtifactError`` naming ``label`` (e.g. "churn_model version 7") and the reasons: a
    flavour other than scikit-learn as skops, a ``skops_trusted_types`` entry or a type in the file that is not in
    ``ALLOWED_UNTRUSTED_TYPES``, bundled code, or a pyfunc loader other than MLflow's scikit-learn one. Only the
    file's schema is read: nothing of the model is imported or built.
    """
    import skops.io
    import yaml

    flavors = yaml.safe_load((model_dir / "MLmodel").read_text()).get("flavors") or {}
    sklearn = flavors.get("sklearn")
    if not isinstance(sklearn, dict):
        raise UntrustedArtifactError(f"{label}: its MLmodel has no sklearn flavour; the platform loads no other kind")
    problems: list[str] = []
    serialization = sklearn.get("serialization_format", "pickle")  # MLflow's default when none is recorded
    if serialization != "skops":
        problems.append(f"it is serialized as {serialization!r}, which runs code while loading; only skops is loaded")
    asked = sorted(set(sklearn.get("skops_trusted_types") or []) - set(ALLOWED_UNTRUSTED_TYPES))
    if asked:
        problems.append(f"its MLmodel asks to trust types outside the platform's allow-list: {asked}")
    pyfunc = flavors.get("python_function") or {}
    if pyfunc.get("loader_module", "mlflow.sklearn") != "mlflow.sklearn":
        problems.append(f"its pyfunc loader is {pyfunc['loader_module']!r}, not mlflow.sklearn")
    if sklearn.get("code") or pyfunc.get("code"):
        problems.append("it ships code to put on the import path")
    model_file = (model_dir / str(sklearn.get("pickled_model", ""))).resolve()
    if not model_file.is_relative_to(model_dir.resolve()) or not model_file.is_file():
        problems.append(f"its model file {sklearn.get('pickled_model')!r} is not a file inside the model folder")
    elif not problems:
        held = sorted(set(skops.io.get_untrusted_types(file=model_file)) - set(ALLOWED_UNTRUSTED_TYPES))
        if held:
            problems.append(f"its model file holds types outside the platform's allow-list: {held}")
    if problems:
        raise UntrustedArtifactError(
            f"{label} is refused: {'; '.join(problems)}. Nothing of it was loaded. If a listed type is safe (no code "
            f"runs when it loads), add it to ALLOWED_UNTRUSTED_TYPES in {__name__} with the reason, and retrain."
        )


def load_with_platform_trust(model_dir: Path) -> Any:
    """The scikit-learn model of a folder ``verify_model_dir`` accepted, loaded by skops trusting the platform's
    list: whatever the folder's MLmodel says, skops refuses any other type."""
    import skops.io
    import yaml

    sklearn = yaml.safe_load((model_dir / "MLmodel").read_text())["flavors"]["sklearn"]
    return skops.io.load(model_dir / sklearn["pickled_model"], trusted=sorted(ALLOWED_UNTRUSTED_TYPES))
