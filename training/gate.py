"""The promotion gate: is a candidate worse than the models it would replace? (Pure: numpy only.)

Inputs are per-image correctness vectors, measured now, with onnxruntime, on the same test
images: recorded accuracies are never trusted. Each comparison is a paired exact McNemar test
on the images where the two models disagree: under "the candidate is as good", the images only
the candidate gets right are Binomial(disagreements, 1/2); the one-sided p-value is the chance
of as few as were seen. The candidate is promoted when it clears the absolute floor and no
reference rejects it at the significance level α (default 0.05).

Why two references. Against the served model alone, any rule with a tolerance (`current −
0.005`, or "not significantly worse") lets each promotion lose a little: a chain of slightly
worse candidates walks the served accuracy down to the floor, one noise margin at a time.
So the candidate is also compared with the champion: the most accurate version still in the
repository, evaluated now as well, and kept out of pruning by the job. The champion only
changes when a more accurate version arrives, so every promoted model is within one noise
margin of the best model the repository has held, and the losses cannot add up.

The production holdout. When the job learned from labelled production images, the newest of
them (never trained on) are a second test set, and the candidate is compared there with the
current model by the same paired test. What it must show depends on whether production has
drifted, defined as: the current model's accuracy on the holdout is significantly below its
accuracy on the clean test set less a tolerance (default 2 points), by a one-sided exact
binomial test at α of the holdout's correct count against that rate (the clean accuracy, on
10,000 images, is taken as known: its noise is a fraction of the holdout's).
- Drifted: the candidate must be significantly better than the current model on the holdout
  (McNemar, "the candidate is better", p < α). Retraining exists to fix the drift; a
  candidate that does not measurably fix it is churn, with the risk of a new version for none
  of the gain, and the next day's labels give the job another try.
- Not drifted: the candidate must not be significantly worse on the holdout, as on the clean
  test. Production looks like the test set, so it is one more guard, not a goal.
The tolerance keeps a small, steady gap (the service's preprocessing is not the dataset's, and
what users send is never quite Fashion-MNIST) from counting as drift on a large holdout.
A candidate must clear both: the clean rule above and this one.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import numpy as np

from training.config import SIGNIFICANCE

DRIFT_TOLERANCE = 0.02


def mcnemar_worse_p(candidate_only: int, reference_only: int) -> float:
    """One-sided exact McNemar p-value for "the candidate is worse than the reference"."""
    n = candidate_only + reference_only
    if n == 0:
        return 1.0
    # P(X ≤ candidate_only), X ~ Binomial(n, 1/2), in exact integers (n is at most 10,000):
    # floats would underflow 2**-n. Each binomial coefficient comes from the previous one.
    term = total = 1
    for k in range(candidate_only):
        term = term * (n - k) // (k + 1)
        total += term
    return float(Fraction(total, 2**n))


def binomial_below_p(successes: int, trials: int, rate: float) -> float:
    """P(X ≤ successes) for X ~ Binomial(trials, rate): is a count significantly below a known rate?"""
    if trials == 0 or rate <= 0:
        return 1.0
    if rate >= 1:
        return 1.0 if successes >= trials else 0.0
    # Each term in logs (lgamma): rate**k underflows for a few thousand trials.
    log_terms = [math.lgamma(trials + 1) - math.lgamma(k + 1) - math.lgamma(trials - k + 1)
                 + k * math.log(rate) + (trials - k) * math.log1p(-rate) for k in range(successes + 1)]
    top = max(log_terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in log_terms))


@dataclass(frozen=True)
class Comparison:
    """A candidate against one reference model on the same images."""

    reference: str  # "current" or "champion" (clean test), "current on production" (holdout)
    version: int
    accuracy: float
    candidate_only: int  # images only the candidate gets right
    reference_only: int  # images only the reference gets right
    p_value: float
    significantly_worse: bool


def compare(role: str, version: int, candidate: np.ndarray, reference: np.ndarray, significance: float) -> Comparison:
    """Paired comparison of two boolean correctness vectors over the same images."""
    if candidate.shape != reference.shape:
        raise ValueError(f"correctness vectors differ in shape: {candidate.shape} vs {reference.shape}")
    candidate_only = int(np.sum(candidate & ~reference))
    reference_only = int(np.sum(reference & ~candidate))
    p = mcnemar_worse_p(candidate_only, reference_only)
    return Comparison(role, version, float(reference.mean()), candidate_only, reference_only, p, p < significance)


@dataclass(frozen=True)
class Holdout:
    """Correctness on the production holdout: the candidate's and the current version's."""

    candidate: np.ndarray
    current: np.ndarray
    tolerance: float = DRIFT_TOLERANCE


@dataclass(frozen=True)
class Drift:
    """Has production drifted away from the current model? (see the module docstring)"""

    clean_accuracy: float
    holdout_accuracy: float
    holdout_images: int
    tolerance: float
    p_value: float
    drifted: bool


def drift(current_clean: np.ndarray, current_holdout: np.ndarray, tolerance: float, significance: float) -> Drift:
    """Drifted when the holdout's correct count is significantly below the rate clean accuracy − tolerance."""
    clean = float(current_clean.mean())
    p = binomial_below_p(int(current_holdout.sum()), len(current_holdout), clean - tolerance)
    return Drift(clean, float(current_holdout.mean()), len(current_holdout), tolerance, p, p < significance)


@dataclass(frozen=True)
class Production:
    """The gate's part on the production holdout."""

    drift: Drift
    comparison: Comparison
    better_p_value: float  # one-sided McNemar for "the candidate is better"
    candidate_accuracy: float
    passed: bool
    reason: str


def judge_production(version: int, holdout: Holdout, current_clean: np.ndarray, significance: float) -> Production:
    """The holdout rule: significantly better where production drifted, else not significantly worse."""
    shift = drift(current_clean, holdout.current, holdout.tolerance, significance)
    comparison = compare("current on production", version, holdout.candidate, holdout.current, significance)
    better_p = mcnemar_worse_p(comparison.reference_only, comparison.candidate_only)
    accuracy = float(holdout.candidate.mean())
    figures = (f"production holdout ({shift.holdout_images} images): candidate {accuracy:.4f}, current v{version} "
               f"{shift.holdout_accuracy:.4f} ({comparison.candidate_only} vs {comparison.reference_only} disagreements)")
    if shift.drifted:
        passed = better_p < significance
        why = (f"drifted (current {shift.holdout_accuracy:.4f} vs clean {shift.clean_accuracy:.4f} − {shift.tolerance}, "
               f"p = {shift.p_value:.3g}); {figures}; better: p = {better_p:.3g}"
               + ("" if passed else f" ≥ {significance}, not significantly better where production drifted"))
    else:
        passed = not comparison.significantly_worse
        why = (f"not drifted (p = {shift.p_value:.3g}); {figures}; worse: p = {comparison.p_value:.3g}"
               + ("" if passed else f" < {significance}, significantly worse on production"))
    return Production(shift, comparison, better_p, accuracy, passed, why)


@dataclass(frozen=True)
class Verdict:
    """The decision and everything it rests on (the JSON report shows all of it)."""

    promote: bool
    reason: str
    candidate_accuracy: float
    min_accuracy: float
    significance: float
    comparisons: list[Comparison] = field(default_factory=list)
    production: Production | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def decide(candidate: np.ndarray, references: dict[str, tuple[int, np.ndarray]], min_accuracy: float,
           significance: float = SIGNIFICANCE, holdout: Holdout | None = None) -> Verdict:
    """Promote when accuracy ≥ min_accuracy, no reference ({role: (version, correct)}) is
    significantly better (a role may name the same version as another: then it is one test),
    and, given a production holdout, the holdout rule passes against the "current" reference."""
    accuracy = float(candidate.mean())
    comparisons = [compare(role, version, candidate, correct, significance) for role, (version, correct) in references.items()]
    production = None
    if holdout is not None and "current" in references:
        production = judge_production(references["current"][0], holdout, references["current"][1], significance)
    verdict = dict(candidate_accuracy=accuracy, min_accuracy=min_accuracy, significance=significance,
                   comparisons=comparisons, production=production)
    if accuracy < min_accuracy:
        return Verdict(False, f"accuracy {accuracy:.4f} < floor {min_accuracy:.4f}", **verdict)
    worse = [c for c in comparisons if c.significantly_worse]
    if worse:
        why = "; ".join(f"worse than the {c.reference} v{c.version} ({c.accuracy:.4f}): {c.candidate_only} vs "
                        f"{c.reference_only} disagreements, p = {c.p_value:.3g} < {significance}" for c in worse)
        return Verdict(False, why, **verdict)
    if production is not None and not production.passed:
        return Verdict(False, production.reason, **verdict)
    against = ", ".join(f"{c.reference} v{c.version} {c.accuracy:.4f} (p = {c.p_value:.3g})" for c in comparisons) or "no reference"
    why = f"accuracy {accuracy:.4f} ≥ floor {min_accuracy:.4f}, not significantly worse than {against}"
    return Verdict(True, why + (f"; {production.reason}" if production else ""), **verdict)
