"""Benchmark: how often the realized-performance check fails on calm days, and how often it sees a real drop.

    .venv/bin/python bench/performance_false_alarms.py [--days 1000] [--rows 3000] [--positives 60] [--auc 0.78]

A calm day is drawn from one fixed score distribution: each of ``--rows`` entities gets a calibrated churn
probability (logit-normal: its mean makes ``--positives`` churners a day on average, its spread makes the population
ROC AUC ``--auc``) and a label drawn as a Bernoulli of that probability. The true AUC of every calm day is then the
validation AUC the check compares with, so any failure on a calm day is a false alarm: a retrain on noise.

A drop day keeps the same scores but draws its labels from a flatter probability with the same base rate, whose
population AUC is lower by the drop: the model ranks that much worse, and the check should say so.

Prints, per rule, the calm days failed per 1,000 and the share of drop days detected:

* fixed tolerance: the old rule, fail when realized AUC < validation AUC - tolerance;
* significance: the check's rule (``performance.judge_realized_auc``) with the realized AUC's standard error only
  (a model version that recorded no validation counts), then with the validation AUC's too (a 14-day window);
* for comparison, a one-sided z test of the shortfall beyond the tolerance (validation - tolerance - realized),
  which asks for a drop of tolerance + z * SE before it fires half the time.

The draws are seeded: the same arguments print the same figures.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from dagster_project.defs.monitoring import performance as perf

# A check rule as the bench sees it: (realized AUC, positives, negatives) -> the check fails.
Rule = Callable[[float, int, int], bool]

# The population is integrated over a grid of the standard normal that drives every score.
_GRID = np.linspace(-8.0, 8.0, 8001)
_DENSITY = np.exp(-(_GRID**2) / 2)
VALIDATION_DAYS = 14  # the training default: the validation window is this many days of the same population


@dataclass(frozen=True)
class LogitNormal:
    """Calibrated probabilities ``sigmoid(mean + spread * z)`` of entities whose z is standard normal."""

    mean: float
    spread: float

    def probability(self, z: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(self.mean + self.spread * z)))

    def base_rate(self) -> float:
        return float(np.sum(self.probability(_GRID) * _DENSITY) / np.sum(_DENSITY))

    def population_auc(self) -> float:
        """ROC AUC, over the whole population, of any score increasing in z against labels drawn from this."""
        q = self.probability(_GRID)
        positive, negative = q * _DENSITY, (1 - q) * _DENSITY
        below = np.cumsum(negative) - negative / 2  # negatives ranked below each grid point (ties count half)
        return float(np.sum(positive * below) / (positive.sum() * negative.sum()))


def _bisect(f: Callable[[float], float], target: float, low: float, high: float) -> float:
    """The x in [low, high] where the increasing ``f`` reaches ``target``."""
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if f(middle) < target else (low, middle)
    return (low + high) / 2


def calibrated(auc: float, base_rate: float) -> LogitNormal:
    """The logit-normal probabilities with this population ROC AUC and this base rate."""

    def with_spread(spread: float) -> LogitNormal:
        mean = _bisect(lambda m: LogitNormal(m, spread).base_rate(), base_rate, -30.0, 30.0)
        return LogitNormal(mean, spread)

    return with_spread(_bisect(lambda s: with_spread(s).population_auc(), auc, 1e-6, 10.0))


@dataclass(frozen=True)
class Day:
    realized_auc: float
    positives: int
    negatives: int


def draw_days(days: int, rows: int, scores: LogitNormal, truth: LogitNormal, seed: int) -> list[Day]:
    """``days`` days of ``rows`` entities scored by ``scores`` whose labels are Bernoulli draws of ``truth``.

    Days with fewer than ``perf.MIN_CLASS_ROWS`` of a class are left out, as the check skips them.
    """
    rng = np.random.default_rng(seed)
    drawn = []
    for _ in range(days):
        z = rng.standard_normal(rows)
        labels = rng.random(rows) < truth.probability(z)
        positives = int(labels.sum())
        if min(positives, rows - positives) < perf.MIN_CLASS_ROWS:
            continue
        drawn.append(Day(float(roc_auc_score(labels, scores.probability(z))), positives, rows - positives))
    return drawn


def failures(rule: Rule, days: Iterable[Day]) -> int:
    """How many of ``days`` the rule fails."""
    return sum(rule(d.realized_auc, d.positives, d.negatives) for d in days)


def fixed_tolerance(validation: float, tolerance: float) -> Rule:
    """The old rule: fail whenever the realized AUC is below the validation AUC minus the tolerance."""
    return lambda auc, positives, negatives: not perf.within_tolerance(auc, validation, tolerance)


def significance(
    validation: float,
    tolerance: float,
    level: float,
    validation_positives: int | None = None,
    validation_negatives: int | None = None,
) -> Rule:
    """The check's rule (``perf.judge_realized_auc``)."""
    return lambda auc, positives, negatives: (
        not perf.judge_realized_auc(
            auc,
            positives,
            negatives,
            validation,
            tolerance=tolerance,
            significance_level=level,
            validation_positives=validation_positives,
            validation_negatives=validation_negatives,
        ).passed
    )


def shortfall_beyond_tolerance(validation: float, tolerance: float, level: float) -> Rule:
    """For comparison: a one-sided z test of (validation - tolerance - realized) on the realized AUC's SE."""
    z_critical = _bisect(lambda z: 1 - 0.5 * math.erfc(z / math.sqrt(2)), 1 - level, 0.0, 10.0)

    def rule(auc: float, positives: int, negatives: int) -> bool:
        se = perf.hanley_mcneil_se(auc, positives, negatives)
        return validation - tolerance - auc > z_critical * se

    return rule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=1000, help="days drawn per scenario")
    parser.add_argument("--rows", type=int, default=3000, help="labelled entities a day")
    parser.add_argument("--positives", type=float, default=60, help="churners a day, on average")
    parser.add_argument("--auc", type=float, default=0.78, help="the validation (and calm days' true) ROC AUC")
    parser.add_argument("--tolerance", type=float, default=0.05, help="PLATFORM_THRESHOLDS__PERFORMANCE_TOLERANCE")
    parser.add_argument("--level", type=float, default=0.01, help="PLATFORM_THRESHOLDS__PERFORMANCE_SIGNIFICANCE_LEVEL")
    parser.add_argument("--drops", type=float, nargs="+", default=[0.05, 0.08, 0.1, 0.12, 0.15])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.perf_counter()
    rate = args.positives / args.rows
    model = calibrated(args.auc, rate)
    validation_rows = VALIDATION_DAYS * args.rows
    validation_positives = round(VALIDATION_DAYS * args.positives)
    rules = {
        f"fixed tolerance {args.tolerance} (old rule)": fixed_tolerance(args.auc, args.tolerance),
        f"significance {args.level}, realized SE only": significance(args.auc, args.tolerance, args.level),
        f"significance {args.level}, + validation SE ({validation_rows:,} rows)": significance(
            args.auc, args.tolerance, args.level, validation_positives, validation_rows - validation_positives
        ),
        f"z test beyond the tolerance {args.level} (comparison)": shortfall_beyond_tolerance(
            args.auc, args.tolerance, args.level
        ),
    }
    scenarios = {"calm": draw_days(args.days, args.rows, model, model, args.seed)}
    for drop in args.drops:
        scenarios[f"drop {drop:.2f}"] = draw_days(
            args.days, args.rows, model, calibrated(args.auc - drop, rate), args.seed + 1
        )

    calm = scenarios["calm"]
    ses = [perf.hanley_mcneil_se(d.realized_auc, d.positives, d.negatives) for d in calm]
    print(
        f"{args.days:,} days per scenario of {args.rows:,} entities, {np.mean([d.positives for d in calm]):.1f} "
        f"churners a day on average; validation AUC {args.auc} = the calm days' true AUC; realized AUC on calm days "
        f"{np.mean([d.realized_auc for d in calm]):.3f} +- {np.std([d.realized_auc for d in calm]):.3f} "
        f"(Hanley-McNeil SE {np.mean(ses):.3f}); seed {args.seed}"
    )
    width = max(len(name) for name in rules)
    header = f"{'rule':<{width}}  {'calm days failed':>18}" + "".join(
        f"  {name + ' seen':>15}" for name in scenarios if name != "calm"
    )
    print(header)
    for name, rule in rules.items():
        failed = failures(rule, calm)
        line = f"{name:<{width}}  {f'{failed} / {len(calm)}':>18}"
        for scenario, days in scenarios.items():
            if scenario != "calm":
                line += f"  {failures(rule, days) / len(days):>15.0%}"
        print(line)
    print(f"({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
