"""Face verification by LFW's 10-fold protocol, as facenet's `validate_on_lfw` computes it.

Pure numpy. For pairs of embeddings with a same/different label each:

- distance: squared Euclidean (metric 0, facenet's default; 0..4 for unit embeddings) or angular
  (metric 1: arccos of the cosine similarity / pi, 0..1);
- accuracy: for each fold in turn, the threshold with the best accuracy on the other folds
  (the lowest one on a tie) is picked from a grid (facenet: 0, 0.01, ..., 3.99), and the pairs
  of the held-out fold are called "same" when their distance is below it. Mean and population
  standard deviation (numpy's default, as facenet prints) over the folds;
- ROC: true and false accept rates of each test fold at every grid threshold, averaged over the
  folds, plus a last point at an infinite threshold (1, 1) — facenet's curve stops at the grid's
  end, which understates the AUC when some distance is beyond it (squared distances of unit
  vectors reach 4); AUC by the trapezoidal rule over that curve; EER where the curve crosses
  FPR = 1 - TPR, the polyline between its points interpolated linearly;
- VAL @ FAR: on the training folds, the threshold at which the false accept rate reaches the
  target (1e-3), linearly interpolated on a finer grid (facenet: 0, 0.001, ..., 3.999): the
  largest grid threshold whose FAR equals the target, else the interpolation between the last
  grid threshold whose FAR is below the target and the next. The held-out fold's VAL (true
  accept rate) and FAR at it; means over folds, and VAL's standard deviation. When even the
  largest threshold stays below the target FAR, the threshold is 0 and VAL is 0, as in facenet.

facenet interpolates with `scipy.interpolate.interp1d(far, thresholds, kind="slinear")`, which
current SciPy refuses on repeated FAR values ("Expect x to not have duplicates"; the FAR curve
is a step function, so values repeat); the rule above is what `interp1d(kind="linear")` and
`np.interp` return on such a curve, written out so that it does not rest on their handling of
ties. Folds are facenet's
consecutive KFold split unless fold ids are given (`bench.data.pairs` gives LFW's by line).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

EUCLIDEAN, ANGULAR = 0, 1
_METRICS = {"euclidean": EUCLIDEAN, "squared_euclidean": EUCLIDEAN, "angular": ANGULAR,
            "cosine": ANGULAR}
ROC_THRESHOLDS = np.arange(0, 4, 0.01)  # facenet's lfw.evaluate
VAL_THRESHOLDS = np.arange(0, 4, 0.001)
FAR_TARGET = 1e-3


class VerificationError(ValueError):
    """Inputs the protocol cannot evaluate; the message says which and why."""


@dataclass(frozen=True)
class Verification:
    """The figures of one evaluation; `to_dict` is what a result file stores."""

    metric: int
    folds: int
    pairs: int
    same_pairs: int
    different_pairs: int
    missing_pairs: int
    accuracy: float  # mean over folds
    accuracy_std: float
    fold_accuracy: tuple[float, ...]
    fold_threshold: tuple[float, ...]  # the threshold each fold's accuracy was tested at
    fold_val_threshold: tuple[float, ...]  # the threshold each fold's VAL was tested at
    val: float
    val_std: float
    far: float
    far_target: float
    auc: float
    eer: float
    # the fold-averaged ROC at each grid threshold, then at infinity (1, 1)
    tpr: np.ndarray = field(repr=False, compare=False)
    fpr: np.ndarray = field(repr=False, compare=False)

    def to_dict(self) -> dict:
        return {
            "metric": "squared_euclidean" if self.metric == EUCLIDEAN else "angular",
            "folds": self.folds, "pairs": self.pairs, "same_pairs": self.same_pairs,
            "different_pairs": self.different_pairs, "missing_pairs": self.missing_pairs,
            "accuracy": self.accuracy, "accuracy_std": self.accuracy_std,
            "fold_accuracy": list(self.fold_accuracy),
            "fold_threshold": list(self.fold_threshold),
            "fold_val_threshold": list(self.fold_val_threshold),
            "val": self.val, "val_std": self.val_std, "far": self.far,
            "far_target": self.far_target, "auc": self.auc, "eer": self.eer,
        }


def metric_id(metric: int | str) -> int:
    """0 / "euclidean" (squared) or 1 / "angular" → facenet's `distance_metric` number."""
    if isinstance(metric, str):
        if metric.lower() in _METRICS:
            return _METRICS[metric.lower()]
    elif metric in (EUCLIDEAN, ANGULAR) and not isinstance(metric, bool):
        return int(metric)
    raise VerificationError(f"unknown distance metric {metric!r}; use 0 or \"euclidean\" "
                            "(squared Euclidean), 1 or \"angular\" (arccos of cosine / pi)")


def distances(embeddings1: np.ndarray, embeddings2: np.ndarray,
              metric: int | str = EUCLIDEAN) -> np.ndarray:
    """Row-wise distance of two (n, d) arrays: squared Euclidean, or angular in [0, 1]."""
    a = np.asarray(embeddings1, dtype=np.float64)
    b = np.asarray(embeddings2, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise VerificationError(f"embeddings of shapes {a.shape} and {b.shape}; expected two "
                                "(pairs, dim) arrays of the same shape")
    if metric_id(metric) == EUCLIDEAN:
        return np.sum(np.square(a - b), axis=1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    if np.any(norms == 0):
        raise VerificationError(f"{int(np.sum(norms == 0))} pair(s) with a zero embedding have "
                                "no angle; use the Euclidean metric")
    cosine = np.clip(np.sum(a * b, axis=1) / norms, -1.0, 1.0)  # rounding can pass 1
    return np.arccos(cosine) / math.pi


def kfold_ids(n: int, folds: int) -> np.ndarray:
    """Fold (1..folds) of each of `n` items in order, as sklearn's KFold(shuffle=False):
    consecutive blocks, the first `n % folds` one longer."""
    if folds < 2 or n < folds:
        raise VerificationError(f"{n} pairs cannot make {folds} folds; need 2 or more folds "
                                "and at least one pair per fold")
    sizes = np.full(folds, n // folds)
    sizes[: n % folds] += 1
    return np.repeat(np.arange(1, folds + 1), sizes)


def evaluate(embeddings1: np.ndarray, embeddings2: np.ndarray, issame: np.ndarray, *,
             folds: int | np.ndarray = 10, metric: int | str = EUCLIDEAN,
             subtract_mean: bool = False, far_target: float = FAR_TARGET,
             thresholds: np.ndarray = ROC_THRESHOLDS,
             val_thresholds: np.ndarray = VAL_THRESHOLDS,
             missing_pairs: int = 0) -> Verification:
    """The protocol on row-aligned pairs of embeddings.

    `folds`: a count (facenet's consecutive split) or one fold id per pair (any integers; each
    fold must hold a same and a different pair). `subtract_mean`: facenet's option, the mean of
    the training folds' embeddings is removed before distances. `missing_pairs` is only recorded.
    """
    a = np.asarray(embeddings1, dtype=np.float64)
    b = np.asarray(embeddings2, dtype=np.float64)
    metric = metric_id(metric)
    distances(a[:0], b[:0], metric)  # shape checks
    issame, fold_of = _labels_and_folds(issame, len(a), folds)
    if subtract_mean:
        def fold_distances(train: np.ndarray) -> np.ndarray:
            mean = np.mean(np.concatenate([a[train], b[train]]), axis=0)
            return distances(a - mean, b - mean, metric)
    else:
        shared = distances(a, b, metric)

        def fold_distances(train: np.ndarray) -> np.ndarray:
            return shared

    return _protocol(fold_distances, issame, fold_of, metric, far_target, thresholds,
                     val_thresholds, missing_pairs)


def evaluate_distances(dist: np.ndarray, issame: np.ndarray, *,
                       folds: int | np.ndarray = 10, metric: int | str = EUCLIDEAN,
                       far_target: float = FAR_TARGET, thresholds: np.ndarray = ROC_THRESHOLDS,
                       val_thresholds: np.ndarray = VAL_THRESHOLDS,
                       missing_pairs: int = 0) -> Verification:
    """The protocol on precomputed distances, one per pair (`metric` is only recorded)."""
    dist = np.asarray(dist, dtype=np.float64)
    if dist.ndim != 1:
        raise VerificationError(f"distances of shape {dist.shape}; expected one per pair")
    issame, fold_of = _labels_and_folds(issame, len(dist), folds)
    return _protocol(lambda train: dist, issame, fold_of, metric_id(metric), far_target,
                     thresholds, val_thresholds, missing_pairs)


def _protocol(fold_distances: Callable[[np.ndarray], np.ndarray], issame: np.ndarray,
              fold_of: np.ndarray, metric: int, far_target: float, thresholds: np.ndarray,
              val_thresholds: np.ndarray, missing_pairs: int) -> Verification:
    """Each fold in turn is the test fold; `fold_distances(train mask)` gives all distances."""
    thresholds = _grid(thresholds, "thresholds")
    val_thresholds = _grid(val_thresholds, "val_thresholds")
    if not 0 < far_target < 1:
        raise VerificationError(f"far_target = {far_target}; write a rate in (0, 1), e.g. 1e-3")
    roc_thresholds = np.append(thresholds, np.inf)  # closes the curve at (1, 1)
    fold_names = np.unique(fold_of)
    tprs, fprs, accuracy, chosen, vals, fars, val_chosen = [], [], [], [], [], [], []
    for name in fold_names:
        test = fold_of == name
        train = ~test
        d = fold_distances(train)
        # The threshold with the best training accuracy, then accuracy on the held-out fold.
        tp, fp, n_same, n_diff = _accepts(d[train], issame[train], thresholds)
        train_accuracy = (tp + (n_diff - fp)) / (n_same + n_diff)
        best = thresholds[int(np.argmax(train_accuracy))]
        tp, fp, n_same, n_diff = _accepts(d[test], issame[test], roc_thresholds)
        tprs.append(tp / n_same)
        fprs.append(fp / n_diff)
        tp1, fp1, _, _ = _accepts(d[test], issame[test], np.array([best]))
        accuracy.append(float((tp1[0] + n_diff - fp1[0]) / (n_same + n_diff)))
        chosen.append(float(best))
        # VAL at the threshold where the training FAR reaches the target.
        _, fp, _, n_diff_train = _accepts(d[train], issame[train], val_thresholds)
        threshold = _far_threshold(fp / n_diff_train, val_thresholds, far_target)
        tp, fp, n_same, n_diff = _accepts(d[test], issame[test], np.array([threshold]))
        val_chosen.append(threshold)
        vals.append(float(tp[0] / n_same))
        fars.append(float(fp[0] / n_diff))
    tpr, fpr = np.mean(tprs, axis=0), np.mean(fprs, axis=0)
    return Verification(
        metric=metric, folds=len(fold_names), pairs=len(issame),
        same_pairs=int(issame.sum()), different_pairs=int((~issame).sum()),
        missing_pairs=int(missing_pairs),
        accuracy=float(np.mean(accuracy)), accuracy_std=float(np.std(accuracy)),
        fold_accuracy=tuple(accuracy), fold_threshold=tuple(chosen),
        fold_val_threshold=tuple(val_chosen),
        val=float(np.mean(vals)), val_std=float(np.std(vals)), far=float(np.mean(fars)),
        far_target=float(far_target), auc=auc(fpr, tpr), eer=eer(fpr, tpr), tpr=tpr, fpr=fpr)


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under the ROC polyline (points in threshold order, FPR non-decreasing)."""
    fpr, tpr = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def eer(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The FPR at which the ROC polyline meets FPR = 1 - TPR (false accepts = false rejects).

    Along the curve h = TPR + FPR - 1 never decreases; the crossing is interpolated linearly
    between the last point with h < 0 and the next. A curve that never reaches h = 0 has no
    crossing: nan (the protocol's curves end at (1, 1), so they always have one).
    """
    fpr, tpr = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    h = tpr + fpr - 1.0
    at = int(np.searchsorted(h, 0.0, side="left"))  # first point with h >= 0
    if at == len(h):
        return float("nan")
    if at == 0 or h[at] == 0:
        return float(fpr[at])
    s = -h[at - 1] / (h[at] - h[at - 1])
    return float(fpr[at - 1] + s * (fpr[at] - fpr[at - 1]))


def _far_threshold(far: np.ndarray, thresholds: np.ndarray, target: float) -> float:
    """The threshold at which the (non-decreasing) FAR curve reaches `target`; see the module."""
    if far[-1] < target:
        return 0.0  # facenet's fallback: never reached
    last = int(np.searchsorted(far, target, side="right")) - 1  # last point with FAR <= target
    if last < 0:
        return float(thresholds[0])
    if far[last] == target:
        return float(thresholds[last])
    s = (target - far[last]) / (far[last + 1] - far[last])
    return float(thresholds[last] + s * (thresholds[last + 1] - thresholds[last]))


def _accepts(dist: np.ndarray, issame: np.ndarray,
             thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(true accepts, false accepts) at each threshold — pairs with distance < threshold — and
    the numbers of same and different pairs."""
    same = np.sort(dist[issame])
    diff = np.sort(dist[~issame])
    tp = np.searchsorted(same, thresholds, side="left")
    fp = np.searchsorted(diff, thresholds, side="left")
    return tp, fp, len(same), len(diff)


def _grid(values: np.ndarray, name: str) -> np.ndarray:
    grid = np.asarray(values, dtype=np.float64)
    if grid.ndim != 1 or len(grid) < 1 or np.any(np.diff(grid) <= 0):
        raise VerificationError(f"{name} must be a non-empty increasing 1-D array")
    return grid


def _labels_and_folds(issame: np.ndarray, n: int,
                      folds: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(issame)
    if labels.shape != (n,) or labels.dtype != bool:
        raise VerificationError(f"issame has shape {labels.shape} and dtype {labels.dtype}; "
                                f"expected {n} booleans, one per pair")
    if np.isscalar(folds):
        fold_of = kfold_ids(n, int(folds))
    else:
        fold_of = np.asarray(folds)
        if fold_of.shape != (n,) or not np.issubdtype(fold_of.dtype, np.integer):
            raise VerificationError(f"folds has shape {fold_of.shape}; expected {n} integer "
                                    "fold ids, one per pair")
    names = np.unique(fold_of)
    if len(names) < 2:
        raise VerificationError(f"{len(names)} fold(s); the protocol needs 2 or more (the "
                                "threshold is chosen on the others)")
    for name in names:
        member = labels[fold_of == name]
        if member.all() or not member.any():
            kind = "different-people" if member.all() else "same-person"
            raise VerificationError(
                f"fold {name} has {len(member)} pair(s) and no {kind} pair, so its rates are "
                "undefined; too many missing pairs in it, or a pairs file that is not "
                "balanced per fold")
    return labels, fold_of
