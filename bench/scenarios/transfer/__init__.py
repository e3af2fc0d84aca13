"""Transfer learning (the paper's Figure 1), declared: its spec (the suite's [transfer]), its
figures — the frozen network's extraction rate, the head's training, their total and the
accuracies — and its headline. Its run is `bench.scenarios.transfer.run`."""

from __future__ import annotations

from dataclasses import dataclass

from bench.record.figure import HIGHER, LOWER, Figure, efficiency, median, rate_samples
from bench.record.schema import Record
from bench.scenarios.base import Scenario
from bench.spec import at_least, fail, one_of, target

# the one-off and measured parts of a transfer, in the order they run
TRANSFER_TOTAL = ("decode_s", "extraction_s", "head_trace_s", "head_s")


@dataclass(frozen=True)
class TransferSpec:
    """Figure 1 of the paper: embeddings once with a frozen network, then train a head only.

    head = "softmax" (a dense softmax layer) or "svm" (a linear multi-class SVM, the classifier
    facenet's classifier.py trains on embeddings), both trained full-batch.
    """

    batch_size: int = 32  # extraction batch
    head: str = "softmax"
    head_steps: int = 300  # full-batch optimiser steps on the embeddings
    head_learning_rate: float = 0.05
    target_accuracy: float = 0.0  # > 0: report the time to reach it (evaluation off the clock)
    compare_random: bool = True  # with pretrained weights, also transfer from random weights

    def check(self, where: str) -> None:
        at_least(f"{where}.batch_size", self.batch_size, 1)
        one_of(f"{where}.head", self.head, ("softmax", "svm"))
        at_least(f"{where}.head_steps", self.head_steps, 1)
        if self.head_learning_rate <= 0:
            fail(f"{where}.head_learning_rate", "must be > 0")
        target(f"{where}.target_accuracy", self.target_accuracy)


def _figures(record: Record) -> list[Figure]:
    extract = record.series["extract_batch"]
    t = record.measured
    rate = median(extract.rates())
    flops = record.model.get("forward_flops")
    gflops = rate * flops / 1e9 if flops else None
    total = sum(t.get(k, 0.0) for k in TRANSFER_TOTAL)
    driven = record.throughput or {}
    how = driven["mode"] if driven.get("asynchronous") else "the forward pass of one batch"
    return [
        Figure("extract img/s", rate, "img/s", HIGHER, "extract_batch", headline=True,
               note=f"{how}; images decoded before the clock"),
        Figure("extract GFLOP/s", gflops, "GFLOP/s", HIGHER),
        efficiency(record, gflops),
        Figure("extraction s", t.get("extraction_s"), "s", LOWER),
        Figure("decode s", t.get("decode_s"), "s", LOWER),
        Figure("head trace s", t.get("head_trace_s"), "s", LOWER),
        Figure("head s", t.get("head_s"), "s", LOWER),
        Figure("transfer total s", total, "s", LOWER,
               note=" + ".join(k.removesuffix("_s") for k in TRANSFER_TOTAL)),
        Figure("accuracy", record.accuracy, "", HIGHER),
        *_lfw(record),
    ]


def _lfw(record: Record) -> list[Figure]:
    lfw = (record.lfw_verification or {}).get("euclidean")
    if not lfw:
        return []
    return [Figure("LFW accuracy", lfw["accuracy"], "", HIGHER,
                   note="10-fold LFW protocol, squared Euclidean distance"),
            Figure("LFW AUC", lfw["auc"], "", HIGHER)]


SCENARIO = Scenario("transfer", TransferSpec, _figures, rate_samples,
                    headline=lambda params: "extract img/s")
