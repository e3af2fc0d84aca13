"""LFW's 10-fold verification protocol (bench.verification) against cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import verification
from bench.verification import VerificationError, evaluate, evaluate_distances

GRID = np.array([0.0, 0.25, 0.5, 0.75, 1.0])

# Two folds of two same-person (S) and two different-people (D) pairs, by distance:
#   fold 1: S 0.1, 0.6   D 0.4, 0.9        fold 2: S 0.2, 0.45   D 0.7, 0.8
HAND_DIST = np.array([0.1, 0.6, 0.4, 0.9, 0.2, 0.45, 0.7, 0.8])
HAND_SAME = np.array([True, True, False, False, True, True, False, False])


def _hand(**options) -> verification.Verification:
    options = {"folds": 2, "thresholds": GRID, "val_thresholds": GRID, **options}
    return evaluate_distances(HAND_DIST, HAND_SAME, **options)


def test_accuracy_uses_the_threshold_chosen_on_the_other_folds() -> None:
    # Test fold 1, train on fold 2: training accuracy at 0, .25, .5, .75, 1 is 2/4, 3/4, 4/4,
    #   3/4, 2/4 → threshold .5; fold 1 at .5: S .1 accepted, S .6 rejected, D .4 accepted,
    #   D .9 rejected → 2/4.
    # Test fold 2, train on fold 1: 2/4, 3/4, 2/4, 3/4, 2/4 → the lowest best, .25; fold 2 at .25:
    #   S .2 accepted, S .45 rejected, both D rejected → 3/4.
    result = _hand()
    assert result.fold_threshold == (0.5, 0.25)
    assert result.fold_accuracy == (0.5, 0.75)
    assert result.accuracy == 0.625 and result.accuracy_std == 0.125  # population std


def test_auc_and_eer_come_from_the_fold_averaged_roc() -> None:
    # Per test fold (TPR, FPR) at 0, .25, .5, .75, 1:
    #   fold 1: (0,0) (.5,0) (.5,.5) (1,.5) (1,1);  fold 2: (0,0) (.5,0) (1,0) (1,.5) (1,1)
    #   mean:   (0,0) (.5,0) (.75,.25) (1,.5) (1,1)
    # AUC = .25*(.5+.75)/2 + .25*(.75+1)/2 + .5*1 = .15625 + .21875 + .5 = .875
    # EER: at threshold .5, FPR = .25 = 1 - TPR.
    result = _hand()
    np.testing.assert_array_equal(result.tpr, [0, 0.5, 0.75, 1, 1, 1])  # last: threshold inf
    np.testing.assert_array_equal(result.fpr, [0, 0, 0.25, 0.5, 1, 1])
    assert result.auc == 0.875
    assert result.eer == 0.25


def test_val_interpolates_the_threshold_where_the_training_far_reaches_the_target() -> None:
    # Target FAR .25. Fold 1's training FAR (fold 2's D at .7, .8) at the grid: 0 0 0 .5 1 → .25
    #   lies halfway between .5 (FAR 0) and .75 (FAR .5): threshold .625. Fold 1 at .625: both S
    #   accepted (VAL 1), D .4 accepted (FAR .5).
    # Fold 2's training FAR (D .4, .9): 0 0 .5 .5 1 → halfway between .25 and .5: .375. Fold 2 at
    #   .375: S .2 accepted, S .45 not (VAL .5); no D accepted (FAR 0).
    result = _hand(far_target=0.25)
    assert result.fold_val_threshold == (0.625, 0.375)
    assert result.val == 0.75 and result.val_std == 0.25 and result.far == 0.25


def test_a_far_target_met_exactly_takes_the_largest_threshold_at_it() -> None:
    # Target .5: fold 1's training FAR 0 0 0 .5 1 → .75; fold 2's 0 0 .5 .5 1 → .75 (not .5).
    assert _hand(far_target=0.5).fold_val_threshold == (0.75, 0.75)


def test_a_far_never_reached_gives_threshold_zero_and_val_zero_as_facenet() -> None:
    dist = np.array([0.1, 0.2, 2.0, 2.0, 0.1, 0.2, 2.0, 2.0])  # every D beyond the grid
    result = evaluate_distances(dist, HAND_SAME, folds=2, thresholds=GRID, val_thresholds=GRID)
    assert result.fold_val_threshold == (0.0, 0.0) and result.val == 0.0


def test_eer_interpolates_between_roc_points() -> None:
    # Between (FPR .2, TPR .6) and (.6, .8): TPR + FPR - 1 goes -.2 → .4, zero a third of the way:
    # FPR = .2 + .4/3 = 1/3, where TPR = 2/3.
    assert math.isclose(verification.eer([0, 0.2, 0.6, 1], [0, 0.6, 0.8, 1]), 1 / 3)
    assert math.isclose(verification.auc([0, 0.5, 1], [0, 1, 1]), 0.75)


def _unit_pairs(angles_deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of 2-D unit vectors `angle` degrees apart."""
    theta = np.radians(angles_deg)
    first = np.tile([1.0, 0.0], (len(theta), 1))
    return first, np.stack([np.cos(theta), np.sin(theta)], axis=1)


def test_both_metrics_give_the_hand_computed_distances() -> None:
    a, b = _unit_pairs(np.array([0.0, 60.0, 90.0, 180.0]))
    # squared Euclidean of unit vectors = 2 - 2 cos: 0, 1, 2, 4; angular = angle / 180
    np.testing.assert_allclose(verification.distances(a, b, 0), [0, 1, 2, 4], atol=1e-12)
    np.testing.assert_allclose(verification.distances(a, b, "angular"), [0, 1 / 3, 0.5, 1],
                               atol=1e-12)
    # angular ignores the length; the cosine of a vector with itself never rounds past 1
    np.testing.assert_allclose(verification.distances(3 * a, b, 1), [0, 1 / 3, 0.5, 1],
                               atol=1e-12)
    same = np.full((5, 3), 0.1)
    assert not np.any(np.isnan(verification.distances(same, same, 1)))


@pytest.mark.parametrize("metric", [0, 1])
def test_perfect_separation_scores_perfectly_with_either_metric(metric: int) -> None:
    # 10 folds, each with the same 15 same-person angles (0..20 degrees) and 15 different-people
    # ones (100..180, so squared distances up to 4, past the grid): the threshold chosen on nine
    # folds fits the tenth.
    same = np.tile(np.repeat([True, False], 15), 10)
    a, b = _unit_pairs(np.tile(np.concatenate([np.linspace(0, 20, 15),
                                               np.linspace(100, 180, 15)]), 10))
    result = evaluate(a, b, same, metric=metric)
    assert result.accuracy == 1.0 and result.accuracy_std == 0.0
    assert result.auc == 1.0 and result.eer == 0.0
    assert result.val == 1.0 and result.far == 0.0


@pytest.mark.parametrize("metric", [0, 1])
def test_indistinguishable_pairs_score_at_chance(metric: int) -> None:
    rng = np.random.default_rng(1)
    n = 6000
    a = rng.normal(size=(n, 64))
    b = rng.normal(size=(n, 64))
    same = np.tile(np.repeat([True, False], 300), 10)
    result = evaluate(a / np.linalg.norm(a, axis=1, keepdims=True),
                      b / np.linalg.norm(b, axis=1, keepdims=True), same, metric=metric)
    assert abs(result.accuracy - 0.5) < 0.03
    assert abs(result.auc - 0.5) < 0.03 and abs(result.eer - 0.5) < 0.03
    assert result.val < 0.01


def _naive(dist: np.ndarray, same: np.ndarray, folds: np.ndarray, grid: np.ndarray,
           far_target: float) -> tuple[list[float], list[float], np.ndarray, np.ndarray]:
    """The protocol threshold by threshold with Python loops, to check the vectorised one."""
    accuracies, vals, tprs, fprs = [], [], [], []

    def rates(t, d, s):
        accept = d < t
        return (np.sum(accept & s) / np.sum(s), np.sum(accept & ~s) / np.sum(~s),
                np.mean(accept == s))

    for fold in np.unique(folds):
        test, train = folds == fold, folds != fold
        train_acc = [rates(t, dist[train], same[train])[2] for t in grid]
        best = grid[int(np.argmax(train_acc))]
        accuracies.append(rates(best, dist[test], same[test])[2])
        tprs.append([rates(t, dist[test], same[test])[0] for t in grid])
        fprs.append([rates(t, dist[test], same[test])[1] for t in grid])
        far = np.array([rates(t, dist[train], same[train])[1] for t in grid])
        below = [i for i in range(len(grid)) if far[i] <= far_target]
        i = below[-1]
        if far[i] == far_target:
            threshold = grid[i]
        else:
            threshold = grid[i] + (far_target - far[i]) / (far[i + 1] - far[i]) * (
                grid[i + 1] - grid[i])
        vals.append(rates(threshold, dist[test], same[test])[0])
    return accuracies, vals, np.mean(tprs, axis=0), np.mean(fprs, axis=0)


def test_the_vectorised_protocol_agrees_with_a_threshold_by_threshold_loop() -> None:
    rng = np.random.default_rng(2)
    same = np.tile(np.repeat([True, False], 40), 5)
    dist = np.where(same, rng.normal(0.8, 0.3, len(same)), rng.normal(1.3, 0.3, len(same)))
    dist = np.clip(dist, 0, 3.9)  # within the grid: the curve reaches (1, 1) there
    folds = np.repeat(np.arange(5), 80)
    grid = np.arange(0, 4, 0.01)
    result = evaluate_distances(dist, same, folds=folds, thresholds=grid, val_thresholds=grid,
                                far_target=0.05)
    accuracies, vals, tpr, fpr = _naive(dist, same, folds, grid, 0.05)
    np.testing.assert_allclose(result.fold_accuracy, accuracies, atol=1e-12)
    np.testing.assert_allclose(result.val, np.mean(vals), atol=1e-12)
    np.testing.assert_allclose(result.tpr[:-1], tpr, atol=1e-12)
    np.testing.assert_allclose(result.fpr[:-1], fpr, atol=1e-12)
    assert math.isclose(result.auc, float(np.trapezoid(tpr, fpr)), abs_tol=1e-12)


def test_default_folds_are_facenets_consecutive_kfold_split() -> None:
    np.testing.assert_array_equal(verification.kfold_ids(7, 3), [1, 1, 1, 2, 2, 3, 3])


def test_given_fold_ids_are_used_as_they_are() -> None:
    # HAND with its pairs reordered and fold ids given: the same figures.
    order = np.array([4, 0, 5, 1, 6, 2, 7, 3])
    folds = np.array([2, 1, 2, 1, 2, 1, 2, 1])
    result = evaluate_distances(HAND_DIST[order], HAND_SAME[order], folds=folds,
                                thresholds=GRID, val_thresholds=GRID, missing_pairs=3)
    assert result.fold_accuracy == (0.5, 0.75) and result.auc == 0.875
    assert result.to_dict()["missing_pairs"] == 3


def test_subtract_mean_removes_the_training_folds_mean() -> None:
    # Each fold holds every pair and its negation, so its mean embedding is 0: shifted by c, the
    # training folds' mean is c and subtracting it restores the original vectors.
    a, b = _unit_pairs(np.array([10.0, 120.0, 20.0, 150.0]))
    a, b = (np.concatenate([x[:2], -x[:2], x[2:], -x[2:]]) for x in (a, b))
    same = np.array([True, False] * 4)
    plain = evaluate(a, b, same, folds=2, metric=1)
    shifted = evaluate(a + 5.0, b + 5.0, same, folds=2, metric=1, subtract_mean=True)
    assert shifted.fold_threshold == plain.fold_threshold
    np.testing.assert_allclose(shifted.tpr, plain.tpr)
    assert evaluate(a + 5.0, b + 5.0, same, folds=2, metric=1).fold_threshold != \
        plain.fold_threshold


@pytest.mark.parametrize(("call", "message"), [
    (lambda: _hand(folds=np.array([1, 1, 1, 1, 2, 2, 2, 2]), metric=7), "unknown distance metric"),
    (lambda: evaluate_distances(HAND_DIST, HAND_SAME, folds=np.array([1, 1, 2, 2] * 2)),
     "fold 1 has 4 pair\\(s\\) and no different-people pair"),
    (lambda: evaluate_distances(HAND_DIST, HAND_SAME, folds=1), "cannot make 1 folds"),
    (lambda: evaluate_distances(HAND_DIST, HAND_SAME[:4]), "expected 8 booleans"),
    (lambda: _hand(far_target=0), "far_target = 0"),
    (lambda: _hand(thresholds=GRID[::-1]), "increasing"),
    (lambda: evaluate(np.zeros((8, 2)), np.ones((8, 2)), HAND_SAME, folds=2, metric=1),
     "zero embedding"),
])
def test_unusable_input_is_refused_saying_why(call, message: str) -> None:
    with pytest.raises(VerificationError, match=message):
        call()
