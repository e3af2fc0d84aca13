"""The other commands: `tlbench machine`, `tlbench data`, `tlbench weights`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from bench import machine
from bench.commands import EXIT_BAD_INPUT


def cmd_machine(args: argparse.Namespace, out: Console) -> int:
    """What a result file's header records, as tables (or JSON): topology, ISA, peak, backends."""
    from bench import backends
    from bench.backends import support

    facts = {"machine": machine.describe(), "software": machine.software()}
    facts["support"] = {"cpu_class": support.class_label(facts["machine"]["isa"]),
                        "backends": backends.support_rows(facts["machine"]["isa"])}
    if args.json:
        print(json.dumps(facts, indent=1))
    else:
        from bench.report import machine as machine_report

        out.print(machine_report.render(facts))
    return 0


def cmd_data(args: argparse.Namespace, out: Console) -> int:
    from bench.data import synthetic

    if args.action == "synth":
        spec = synthetic.SyntheticSpec(identities=args.identities, seed=args.seed)
        root = synthetic.ensure(spec, Path(args.dir) if args.dir else None)
        out.print(f"synthetic data set: {escape(str(root))}")
        return 0
    from bench.data import pairs

    if args.action == "pairs":
        root = Path(args.path).expanduser()
        target = Path(args.out).expanduser() if args.out else root / "pairs.txt"
        written = pairs.write_pairs(root, target, folds=args.folds, per_fold=args.per_fold,
                                    seed=args.seed)
        out.print(f"{escape(str(target))}: {written.folds} identity-disjoint folds x "
                  f"{written.per_fold} same-person and {written.per_fold} different-people pairs "
                  f"({len(written.pairs)} pairs of {len(written.images)} images)")
        return 0
    return _data_check(args, out)


def _data_check(args: argparse.Namespace, out: Console) -> int:
    """Every problem of an LFW-layout directory (and its pairs file) in one pass, grouped by
    kind; exit 0 when it is usable as it is, 2 when not."""
    from bench.data import lfw, pairs

    root = Path(args.path).expanduser()
    t0 = time.perf_counter()
    found = lfw.audit(root, min_images_per_identity=args.min_images)
    usable_images = sum(len(images) for _, images in found.identities)
    out.print(f"{escape(str(root))}: {found.images:,} image files; "
              f"{len(found.identities):,} identities with {args.min_images} or more usable "
              f"images ({usable_images:,} images)")
    for kind, what in lfw.PROBLEM_KINDS.items():
        listed = found.of(kind)
        if listed:
            style = "red" if kind == "bad image" else "yellow"
            out.print(f"[{style}]{len(listed)} {what}[/]:")
            for problem in listed[:args.show]:
                out.print(f"  {problem.text()}", markup=False)
            if len(listed) > args.show:
                out.print(f"  ... and {len(listed) - args.show} more")
    pairs_file = Path(args.pairs).expanduser() if args.pairs else root / "pairs.txt"
    pairs_usable = True
    if args.pairs or pairs_file.is_file():
        try:
            found_pairs = pairs.read_pairs(pairs_file, root)
        except pairs.PairsError as exc:
            print(f"tlbench: error: {exc}", file=sys.stderr)
            pairs_usable = False
        else:
            facts = found_pairs.summary()
            out.print(f"{escape(str(pairs_file))}: {facts['pairs']} pairs in {facts['folds']} "
                      f"folds x {facts['per_fold']} per class; {facts['missing_pairs']} missing")
            bad = {p.path for p in found.of("bad image")}
            for pair in found_pairs.missing[:args.show]:
                out.print(f"  {pairs_file}:{pair.line}: {pair.name1} {pair.number1} / "
                          f"{pair.name2} {pair.number2}: an image does not exist", markup=False)
            if found_pairs.missing:
                out.print(f"[yellow]{len(found_pairs.missing)} pair(s) lack an image[/] "
                          f"({facts['missing_images']} image(s)): they are left out of the LFW "
                          f"figures; every other pair keeps its fold")
            on_bad = [p for p in found_pairs.usable if {p.path1, p.path2} & bad]
            if on_bad:
                out.print(f"[red]{len(on_bad)} pair(s) name a bad image[/], e.g. "
                          + escape(f"{pairs_file}:{on_bad[0].line}"))
    seconds = time.perf_counter() - t0
    bad = found.of("bad image")
    if found.usable and pairs_usable:
        out.print(f"[green]usable as is[/] (checked in {seconds:.1f} s)")
        return 0
    why = (f"{len(bad)} bad image(s): replace or remove them, or leave them out with "
           f"[data] on_bad_image = \"skip\" (tlbench run --skip-bad)" if bad
           else "no identity has enough usable images" if not found.identities
           else "the pairs file cannot be used")
    out.print(f"[red]not usable as is[/]: {escape(why)} (checked in {seconds:.1f} s)")
    return EXIT_BAD_INPUT


def cmd_weights(args: argparse.Namespace, out: Console) -> int:
    """Convert Sandberg's TF1 checkpoint into the harness's weights file (.npz)."""
    from bench.models.checkpoint import CheckpointError, import_checkpoint

    try:
        path, report = import_checkpoint(args.checkpoint, args.out or None,
                                         image_size=args.image_size,
                                         embedding_size=args.embedding_size,
                                         variant=args.variant)
    except (CheckpointError, ValueError) as exc:
        print(f"tlbench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    ignored = ", ".join(f"{n} {kind}" for kind, n in report.ignored.items()) or "none"
    out.print(f"{report.prefix}: {report.variables} variables into {report.layers} layers "
              f"(ignored: {ignored}) → {path}")
    return 0
