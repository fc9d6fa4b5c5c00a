"""The promotion gate on synthetic per-image correctness: exact McNemar, the floor, and no drift."""
from fractions import Fraction
from math import comb

import numpy as np
import pytest

from training.gate import Holdout, binomial_below_p, decide, mcnemar_worse_p

IMAGES = 10_000
FLOOR = 0.90


def _correct(hits: int, rng: np.random.Generator) -> np.ndarray:
    correct = np.zeros(IMAGES, dtype=bool)
    correct[rng.choice(IMAGES, hits, replace=False)] = True
    return correct


@pytest.mark.parametrize("candidate_only, reference_only", [(0, 0), (5, 5), (0, 10), (7, 3), (140, 160), (190, 210)])
def test_mcnemar_is_the_exact_one_sided_binomial_tail(candidate_only, reference_only):
    n = candidate_only + reference_only
    expected = sum(comb(n, k) for k in range(candidate_only + 1)) / 2**n if n else 1.0
    assert mcnemar_worse_p(candidate_only, reference_only) == pytest.approx(expected, rel=1e-12)


def test_only_the_disagreements_count():
    rng = np.random.default_rng(0)
    reference = _correct(9_200, rng)
    candidate = reference.copy()
    hits, misses = np.flatnonzero(reference), np.flatnonzero(~reference)
    candidate[hits[:60]] = False  # breaks 60 images the reference got right
    candidate[misses[:30]] = True  # fixes 30 it got wrong
    verdict = decide(candidate, {"current": (4, reference)}, FLOOR)
    (comparison,) = verdict.comparisons
    assert (comparison.candidate_only, comparison.reference_only) == (30, 60)
    assert comparison.p_value == pytest.approx(mcnemar_worse_p(30, 60)) and comparison.p_value < 0.01
    assert not verdict.promote and "current v4" in verdict.reason
    # 0.3 points lower, but on 900 disagreements half each way: noise, not a worse model.
    noisy = reference.copy()
    noisy[hits[:465]], noisy[misses[:435]] = False, True
    assert decide(noisy, {"current": (4, reference)}, FLOOR).promote


def test_the_floor_applies_even_without_a_reference():
    rng = np.random.default_rng(1)
    assert not decide(_correct(8_900, rng), {}, FLOOR).promote
    assert decide(_correct(9_100, rng), {}, FLOOR).promote


def _slightly_worse(served: np.ndarray, rng: np.random.Generator, changed: int, loss: int) -> np.ndarray:
    """A retrained model: different on `changed` images, `loss` more of them now wrong."""
    candidate = served.copy()
    candidate[rng.choice(np.flatnonzero(served), (changed + loss) // 2, replace=False)] = False
    candidate[rng.choice(np.flatnonzero(~served), (changed - loss) // 2, replace=False)] = True
    return candidate


def _served_accuracies(rule, changed: int, loss: int, rounds: int = 100) -> list[float]:
    rng = np.random.default_rng(2)
    served = champion = _correct(9_204, rng)
    accuracies = []
    for _ in range(rounds):
        candidate = _slightly_worse(served, rng, changed, loss)
        if rule(candidate, served, champion):
            served = candidate
            champion = max(champion, candidate, key=np.mean)  # the job keeps the best version from pruning
        accuracies.append(float(served.mean()))
    return accuracies


def _ours(candidate, served, champion):
    return decide(candidate, {"current": (2, served), "champion": (1, champion)}, FLOOR).promote


def _old(candidate, served, champion):
    return candidate.mean() >= max(FLOOR, served.mean() - 0.005)  # the rule this gate replaced


@pytest.mark.parametrize("changed, loss", [(100, 4), (300, 10), (800, 10), (800, 40)])
def test_a_chain_of_slightly_worse_candidates_cannot_walk_the_served_accuracy_down(changed, loss):
    # Each candidate differs from the served model on `changed` images and loses `loss` of
    # them (0.04 to 0.4 points): each one alone is within noise of the model it replaces.
    ours, old = _served_accuracies(_ours, changed, loss), _served_accuracies(_old, changed, loss)
    assert min(ours) >= 0.9204 - 0.008, "the champion bounds the drift to one noise margin"
    assert ours[-1] == ours[len(ours) // 2], "and it stops: no promotion in the last 50 rounds"
    assert old[-1] < FLOOR + 0.001, "the old `current − 0.005` rule walks down to the floor"


def test_against_the_served_model_alone_mcnemar_walks_down_too():
    # Why the champion is needed: a paired test with the served model only has the same flaw.
    def current_only(candidate, served, champion):
        return decide(candidate, {"current": (2, served)}, FLOOR).promote

    assert _served_accuracies(current_only, 300, 20)[-1] < FLOOR + 0.001


# The production holdout: 400 images, the current model right on `current_hits` of them; on
# the clean test it scores 92%.
HOLDOUT = 400


def _holdout(current_hits: int, fixed: int, broken: int) -> Holdout:
    """The current model right on the first `current_hits` images; the candidate fixes `fixed` of
    its misses and breaks `broken` of its hits."""
    current = np.arange(HOLDOUT) < current_hits
    candidate = current.copy()
    candidate[current_hits : current_hits + fixed] = True
    candidate[:broken] = False
    return Holdout(candidate=candidate, current=current)


def _clean(rng: np.random.Generator) -> np.ndarray:
    return _correct(9_200, rng)


def test_binomial_tail_is_exact():
    assert binomial_below_p(3, 10, 0.5) == pytest.approx(sum(comb(10, k) for k in range(4)) / 2**10, rel=1e-12)
    assert binomial_below_p(10, 10, 0.9) == pytest.approx(1.0)
    # 0.92**400 alone is 3e-15 and the terms' products would underflow; in logs it is exact.
    exact = sum(comb(400, k) * Fraction(23, 25) ** k * Fraction(2, 25) ** (400 - k) for k in range(301))
    assert binomial_below_p(300, 400, 0.92) == pytest.approx(float(exact), rel=1e-9) and float(exact) < 1e-15


def test_drifted_and_improved_is_promoted():
    rng = np.random.default_rng(1)
    clean = _clean(rng)
    holdout = _holdout(current_hits=240, fixed=60, broken=10)  # 60% on production: drifted; +12.5 points
    verdict = decide(clean.copy(), {"current": (1, clean)}, FLOOR, holdout=holdout)
    assert verdict.production.drift.drifted and verdict.production.drift.p_value < 1e-30
    assert verdict.production.comparison.candidate_only == 60 and verdict.production.comparison.reference_only == 10
    assert verdict.production.better_p_value < 1e-6
    assert verdict.promote and "drifted" in verdict.reason


def test_drifted_and_not_improved_is_rejected():
    rng = np.random.default_rng(2)
    clean = _clean(rng)
    # As good on the clean test, +1.25 points on production: 15 vs 10 disagreements is noise.
    verdict = decide(clean.copy(), {"current": (1, clean)}, FLOOR, holdout=_holdout(240, fixed=15, broken=10))
    assert verdict.production.drift.drifted and verdict.production.better_p_value > 0.05
    assert not verdict.promote and "not significantly better where production drifted" in verdict.reason


def test_not_drifted_needs_only_to_be_no_worse_on_production():
    rng = np.random.default_rng(3)
    clean = _clean(rng)
    # 363/400 = 90.75%, within the 2-point tolerance of 92%: not drifted. The candidate changes nothing
    # measurable on production, which is enough here.
    same = decide(clean.copy(), {"current": (1, clean)}, FLOOR, holdout=_holdout(363, fixed=3, broken=4))
    assert not same.production.drift.drifted and same.promote
    # ... but breaking 25 images and fixing 5 is significantly worse, even with a clean test as good.
    worse = decide(clean.copy(), {"current": (1, clean)}, FLOOR, holdout=_holdout(363, fixed=5, broken=25))
    assert not worse.production.drift.drifted and worse.production.comparison.significantly_worse
    assert not worse.promote and "significantly worse on production" in worse.reason


def test_a_production_win_never_buys_a_clean_loss():
    rng = np.random.default_rng(4)
    clean = _clean(rng)
    candidate = clean.copy()
    candidate[np.flatnonzero(clean)[:80]] = False  # 80 clean images broken, none fixed
    verdict = decide(candidate, {"current": (1, clean)}, FLOOR, holdout=_holdout(240, fixed=100, broken=0))
    assert verdict.production.passed and not verdict.promote and "worse than the current v1" in verdict.reason
    assert verdict.as_dict()["production"]["drift"]["drifted"] is True  # the JSON report shows both
