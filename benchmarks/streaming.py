"""Cost of training from an on-disk Dataset relative to training from memory.

The quickstart student (MNIST-1D, its model, batch size, training subset and optimiser)
is trained one-hot for the same epochs

* from memory: `ArrayData`, batched by indexing (bayesdistill's default path);
* from disk: the same arrays written with `save_arrays` and read back as `StreamData`
  (`ondisk_data`: memory-mapped ``.npy`` files, a ``DataLoader`` reading one batch per
  ``__getitems__`` call), with ``num_workers`` 0 and 2 (workers kept alive across epochs:
  ``persistent_workers``; started once per training run, which the timing includes).

in interleaved rounds (see ``workload.py``); each ratio is the median over rounds of the
per-round ratio of whole training runs. Both paths draw the same batch order, so each
run from disk ends with the weights of the run from memory: checked once, printed.

One-hot training is the hardest case for the ratio: the student's step is the cheapest
there is, so the data path's own cost (DataLoader iteration, collation, label checks) is
the largest share. The files sit in the page cache after the first read: this measures the
streaming path's overhead, not the disk.

The last lines printed are ``ratio_streaming_workers0 <x>``, ``ratio_streaming_workers2
<x>``, a line naming the faster, and ``ratio_streaming <x>``, the faster of the two (goal:
at most 1.5 on the CPU).

    python benchmarks/streaming.py [--rounds 9] [--epochs 20] [--full-train]
    python benchmarks/streaming.py --quick      # 3 rounds of 5 epochs: a smoke run
"""

from __future__ import annotations

import functools
import statistics
import tempfile
from dataclasses import replace

import torch
from workload import (
    fresh_student,
    interleaved,
    paired_ratio,
    parse_timing,
    quickstart,
    seconds,
    spread,
    timing_parser,
)

from bayesdistill.data import ondisk_data, save_arrays
from bayesdistill.data.labelled import LoaderOptions
from bayesdistill.losses import onehot_ce
from bayesdistill.train import fit

WORKER_COUNTS = (0, 2)


def main() -> None:
    parser = timing_parser(__doc__.splitlines()[0], rounds=9, epochs=20, quick=(3, 5))
    parser.add_argument("--full-train", action="store_true", help="use the whole training set")
    args = parse_timing(parser)

    work = quickstart(full_train=args.full_train)
    config, train = work.config, work.train
    settings = replace(config.student.train, epochs=args.epochs, evals_per_epoch=1)

    def train_run(data: object) -> torch.nn.Module:
        model = fresh_student(work)
        fit(model, data, loss_fn=onehot_ce, settings=settings, seed=0, progress=False)
        return model

    with tempfile.TemporaryDirectory(prefix="bayesdistill-streaming-") as folder:
        save_arrays(folder, train.x, train.y)
        sources = {"in memory": train}
        for workers in WORKER_COUNTS:
            loader = LoaderOptions(num_workers=workers, persistent_workers=workers > 0)
            sources[f"on disk, {workers} workers"] = ondisk_data(
                folder, num_classes=train.num_classes, loader=loader
            )
        reference = [p.detach() for p in train_run(train).parameters()]
        same = {
            name: all(
                torch.equal(p, q)
                for p, q in zip(reference, train_run(data).parameters(), strict=True)
            )
            for name, data in sources.items()
            if name != "in memory"
        }
        variants = {
            name: functools.partial(lambda d: seconds(lambda: train_run(d)), data)
            for name, data in sources.items()
        }
        times = interleaved(variants, args.rounds)

    print(
        f"workload: {len(train)} training examples of shape {tuple(train.input_shape)}, "
        f"student {config.student.model.name}, one-hot, batch {settings.batch_size}, "
        f"{args.epochs} epochs per run, {args.rounds} rounds; {torch.get_num_threads()} threads"
    )
    for name, is_same in same.items():
        print(f"{name}: same final weights as in memory: {is_same}")
    ratios = {name: paired_ratio(times, name, "in memory") for name in times}
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:>20}: {median / args.epochs * 1e3:8.2f} ms/epoch  (×{ratios[name]:.3f} "
            f"in memory, spread {spread(values) / args.epochs * 1e3:.2f} ms)"
        )
    by_workers = {w: ratios[f"on disk, {w} workers"] for w in WORKER_COUNTS}
    for workers, ratio in by_workers.items():
        print(f"ratio_streaming_workers{workers} {ratio:.3f}")
    best = min(by_workers, key=by_workers.__getitem__)
    print(f"ratio_streaming below: num_workers={best}, the faster of {list(WORKER_COUNTS)}")
    print(f"ratio_streaming {by_workers[best]:.3f}")


if __name__ == "__main__":
    main()
