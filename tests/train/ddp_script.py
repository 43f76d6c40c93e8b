"""Train a small MLP (no BatchNorm) one-hot or by KD, under torchrun or in one process.

Used by tests/train/test_distributed.py and benchmarks/ddp.py:

    python tests/train/ddp_script.py OUT --loss kd [--stop-at E] [--resume]
    torchrun --nproc_per_node 2 tests/train/ddp_script.py OUT --loss kd

Writes OUT/weights.pt (rank 0) and OUT/run/ (metrics.jsonl, checkpoint.pt). With
``--stop-at E`` every rank stops (as Ctrl-C would) when epoch E starts.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from bayesdistill.data import gaussian_mixture, make_splits
from bayesdistill.io import is_writer, save_torch
from bayesdistill.models import create_model
from bayesdistill.seeding import seeded
from bayesdistill.teachers import DeterministicTeacher
from bayesdistill.train import TrainSettings, distill
from bayesdistill.train.batches import LoaderBatches, TensorBatches
from bayesdistill.train.distributed import current_shard, init_from_env

BATCH = 32
EPOCHS = 4


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--loss", default="onehot_ce")
    parser.add_argument("--stop-at", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--samples", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    init_from_env("cpu")
    raw = gaussian_mixture(num_classes=4, dim=8, num_samples=args.samples, seed=3)
    splits = make_splits(raw, val_fraction=0.1, test_fraction=0.1, seed=0)
    with seeded(11):
        teacher_net = create_model("mlp", splits.input_shape, splits.num_classes, hidden=(32,))
    with seeded(5):
        student = create_model("mlp", splits.input_shape, splits.num_classes, hidden=(32, 32))
    if args.stop_at is not None:
        for source in (TensorBatches, LoaderBatches):
            original = source.epoch

            def stop(self, epoch, original=original):
                if epoch == args.stop_at:
                    raise KeyboardInterrupt
                return original(self, epoch)

            source.epoch = stop
    settings = TrainSettings(
        epochs=args.epochs, batch_size=BATCH, lr=0.1, schedule="cosine", evals_per_epoch=2
    )
    teacher = None if args.loss == "onehot_ce" else DeterministicTeacher(teacher_net)
    tic = time.perf_counter()
    try:
        result = distill(
            student,
            splits.train,
            teacher,
            loss=args.loss,
            loss_options={"temperature": 4.0, "alpha": 0.5} if args.loss == "kd" else None,
            settings=settings,
            seed=1,
            evaluate=lambda m: {"val_mean_logit": float(m(splits.val.x).mean())},
            run_dir=f"{args.out}/run",
            resume=args.resume,
            progress=False,
        )
    except KeyboardInterrupt:
        sys.exit(3)
    seconds = time.perf_counter() - tic
    shard = current_shard()
    world = 1 if shard is None else shard.world_size
    if is_writer():
        print(f"examples_per_second {args.epochs * len(splits.train) / seconds:.1f} world {world}")
    save_torch(
        f"{args.out}/weights.pt", {k: v.clone() for k, v in result.model.state_dict().items()}
    )


if __name__ == "__main__":
    main()
