"""Progressive fine-tuning (paper §V), declared: its spec (the suite's [fine_tune]), its
figures — each stage's img/s, the total and the accuracy — and its headline (the last stage's
rate). Its run is `bench.scenarios.fine_tune.run`."""

from __future__ import annotations

from dataclasses import dataclass

from bench.record.figure import HIGHER, LOWER, Figure, median, rate_samples
from bench.record.schema import Record
from bench.scenarios.base import Scenario
from bench.spec import at_least, fail, target

# Stages of progressive fine-tuning, top of the network first (its run's STAGE_PREFIXES).
FINE_TUNE_STAGES = ("Block8", "block8", "Mixed_7a", "block17", "Mixed_6a", "block35", "stem")


@dataclass(frozen=True)
class FineTuneSpec:
    """Paper §V: unfreeze the pretrained network's top blocks one stage at a time."""

    stages: int = 2  # how many of FINE_TUNE_STAGES to add, top first
    steps_per_stage: int = 20
    batch_size: int = 16
    learning_rate: float = 0.005
    weight_decay: float = 5e-4
    target_accuracy: float = 0.0

    def check(self, where: str) -> None:
        if not 1 <= self.stages <= len(FINE_TUNE_STAGES):
            fail(f"{where}.stages", f"must be 1..{len(FINE_TUNE_STAGES)} (stages, top first: "
                  f"{', '.join(FINE_TUNE_STAGES)})")
        at_least(f"{where}.steps_per_stage", self.steps_per_stage, 2)
        at_least(f"{where}.batch_size", self.batch_size, 1)
        if self.learning_rate <= 0:
            fail(f"{where}.learning_rate", "must be > 0")
        at_least(f"{where}.weight_decay", self.weight_decay, 0.0)
        target(f"{where}.target_accuracy", self.target_accuracy)


def _figures(record: Record) -> list[Figure]:
    figs = []
    for k, stage in enumerate(record.stages, start=1):
        figs.append(Figure(f"stage {k} img/s", median(stage.series.rates()), "img/s", HIGHER,
                           f"stage {k}", headline=k == len(record.stages),
                           note=" + ".join(stage.unfrozen)))
    figs.append(Figure("fine-tune total s", record.stages[-1].elapsed_s if record.stages
                       else None, "s", LOWER))
    figs.append(Figure("accuracy", record.accuracy, "", HIGHER))
    return figs


SCENARIO = Scenario("fine_tune", FineTuneSpec, _figures, rate_samples,
                    headline=lambda params: f"stage {params.get('stages', 1)} img/s", trains=True)
