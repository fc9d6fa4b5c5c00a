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
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from fractions import Fraction

import numpy as np

from training.config import SIGNIFICANCE



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


@dataclass(frozen=True)
class Comparison:
    """A candidate against one reference model on the same images."""

    reference: str  # "current" or "champion"
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
class Verdict:
    """The decision and everything it rests on (the JSON report shows all of it)."""

    promote: bool
    reason: str
    candidate_accuracy: float
    min_accuracy: float
    significance: float
    comparisons: list[Comparison] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def decide(candidate: np.ndarray, references: dict[str, tuple[int, np.ndarray]], min_accuracy: float,
           significance: float = SIGNIFICANCE) -> Verdict:
    """Promote when accuracy ≥ min_accuracy and no reference ({role: (version, correct)}) is
    significantly better; a role may name the same version as another (then it is one test)."""
    accuracy = float(candidate.mean())
    comparisons = [compare(role, version, candidate, correct, significance) for role, (version, correct) in references.items()]
    verdict = dict(candidate_accuracy=accuracy, min_accuracy=min_accuracy, significance=significance, comparisons=comparisons)
    if accuracy < min_accuracy:
        return Verdict(False, f"accuracy {accuracy:.4f} < floor {min_accuracy:.4f}", **verdict)
    worse = [c for c in comparisons if c.significantly_worse]
    if worse:
        why = "; ".join(f"worse than the {c.reference} v{c.version} ({c.accuracy:.4f}): {c.candidate_only} vs "
                        f"{c.reference_only} disagreements, p = {c.p_value:.3g} < {significance}" for c in worse)
        return Verdict(False, why, **verdict)
    against = ", ".join(f"{c.reference} v{c.version} {c.accuracy:.4f} (p = {c.p_value:.3g})" for c in comparisons) or "no reference"
    return Verdict(True, f"accuracy {accuracy:.4f} ≥ floor {min_accuracy:.4f}, not significantly worse than {against}", **verdict)
