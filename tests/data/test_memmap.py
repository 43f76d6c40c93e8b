"""On-disk arrays: round trip, atomic writes, training equal to in-memory data, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from bayesdistill.data import ArrayData, OnDiskArrays, Standardizer, ondisk_data, save_arrays
from bayesdistill.data.labelled import LoaderOptions, StreamData, stream_data
from bayesdistill.errors import DataError, DataFileNotFoundError
from bayesdistill.losses import onehot_ce
from bayesdistill.teachers import DeterministicTeacher
from bayesdistill.train import TrainSettings, distill, fit

from ..conftest import make_mlp

SETTINGS = TrainSettings(epochs=2, batch_size=16, lr=0.1)


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def assert_same_weights(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for p, q in zip(a, b, strict=True):
        assert torch.equal(p, q), float((p - q).abs().max())


def test_round_trip_keeps_values_dtype_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(11, 2, 5)).astype(np.float16)
    y = np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2], dtype=np.int32)
    save_arrays(tmp_path / "set", x, y)
    ds = OnDiskArrays(tmp_path / "set")
    assert len(ds) == 11 and ds.input_shape == (2, 5) and ds.dtype == np.float16
    for i in (0, 5, 10):
        xi, yi = ds[i]
        assert xi.dtype == torch.float16 and torch.equal(xi, torch.from_numpy(x[i]))
        assert yi == y[i] and isinstance(yi, int)
    # the batched read gives the same items, in the order asked
    batch = ds.__getitems__([7, 2, 7, 0])
    for (xi, yi), i in zip(batch, [7, 2, 7, 0], strict=True):
        assert torch.equal(xi, torch.from_numpy(x[i])) and yi == y[i]
    data = ondisk_data(tmp_path / "set")
    assert isinstance(data, StreamData)
    assert data.num_classes == 4 and data.input_shape == (2, 5)
    assert data.y.dtype == torch.int64 and torch.equal(data.y, torch.from_numpy(y).long())


def test_torch_tensors_are_saved_as_their_numpy_arrays(tmp_path):
    x = torch.arange(24, dtype=torch.uint8).view(6, 4)
    save_arrays(tmp_path, x, torch.tensor([0, 1, 0, 1, 0, 1]))
    assert np.load(tmp_path / "x.npy").dtype == np.uint8
    assert np.load(tmp_path / "y.npy").dtype == np.int64
    xi, _ = OnDiskArrays(tmp_path)[3]
    assert torch.equal(xi, x[3])


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    x, y = np.ones((4, 3), np.float32), np.array([0, 1, 0, 1])
    save_arrays(tmp_path, x, y)
    before = (tmp_path / "x.npy").read_bytes()

    def half_write(handle, array, allow_pickle):
        handle.write(b"\x93NUMPY partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", half_write)
    with pytest.raises(OSError, match="disk full"):
        save_arrays(tmp_path, 2 * x, y)
    assert (tmp_path / "x.npy").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "y.npy"]


def test_the_dataset_pickles_without_its_arrays_and_reopens_them(tmp_path):
    x = np.random.default_rng(1).normal(size=(2000, 64)).astype(np.float32)  # 512 kB
    y = np.arange(2000) % 5
    save_arrays(tmp_path, x, y)
    ds = OnDiskArrays(tmp_path)
    ds[0]  # maps the files in this process
    blob = pickle.dumps(ds)
    assert len(blob) < 4096  # file names and shapes, not the mapped arrays
    copy = pickle.loads(blob)
    xi, yi = copy[1234]
    assert torch.equal(xi, torch.from_numpy(x[1234])) and yi == 1234 % 5


@pytest.mark.parametrize("num_workers", [0, 2])
def test_training_from_disk_gives_the_in_memory_weights(tiny_splits, tmp_path, num_workers):
    train = tiny_splits.train
    save_arrays(tmp_path, train.x, train.y)
    streamed = ondisk_data(
        tmp_path, num_classes=train.num_classes, loader=LoaderOptions(num_workers=num_workers)
    )
    in_memory = fit(
        make_mlp(tiny_splits), train, loss_fn=onehot_ce, settings=SETTINGS, seed=3, progress=False
    )
    from_disk = fit(
        make_mlp(tiny_splits),
        streamed,
        loss_fn=onehot_ce,
        settings=SETTINGS,
        seed=3,
        progress=False,
    )
    assert_same_weights(weights(in_memory.model), weights(from_disk.model))
    assert [r["train_loss"] for r in from_disk.history] == [
        r["train_loss"] for r in in_memory.history
    ]
    # and the shared batch order matters: another seed trains to other weights
    other = fit(
        make_mlp(tiny_splits),
        streamed,
        loss_fn=onehot_ce,
        settings=SETTINGS,
        seed=4,
        progress=False,
    )
    assert not torch.equal(weights(other.model)[0], weights(from_disk.model)[0])


def test_raw_files_standardised_per_batch_match_standardised_arrays(tiny_splits, tmp_path):
    train = tiny_splits.train
    raw = 3.0 * train.x + 7.0  # what a user would store before standardising
    standardizer = Standardizer.fit(raw, "feature")
    save_arrays(tmp_path, raw, train.y)
    streamed = ondisk_data(tmp_path, num_classes=3, standardizer=standardizer)
    in_memory = ArrayData(standardizer(raw), train.y, 3)
    a = fit(
        make_mlp(tiny_splits),
        in_memory,
        loss_fn=onehot_ce,
        settings=SETTINGS,
        seed=0,
        progress=False,
    )
    b = fit(
        make_mlp(tiny_splits),
        streamed,
        loss_fn=onehot_ce,
        settings=SETTINGS,
        seed=0,
        progress=False,
    )
    assert_same_weights(weights(a.model), weights(b.model))


def test_distillation_from_disk_with_a_cached_teacher_matches_in_memory(
    tiny_splits, trained_mlp, tmp_path
):
    train = tiny_splits.train
    save_arrays(tmp_path, train.x, train.y)
    teacher = DeterministicTeacher(trained_mlp)

    def run(data):
        return distill(
            make_mlp(tiny_splits, seed=1),
            data,
            teacher,
            loss="kd",
            loss_options={"alpha": 0.5, "temperature": 4.0},
            settings=SETTINGS,
            seed=0,
            progress=False,
        ).model

    a, b = run(train), run(ondisk_data(tmp_path, num_classes=3))
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6)


def test_missing_folder_or_file_is_a_data_file_error(tmp_path):
    with pytest.raises(DataFileNotFoundError, match="folder not found.*save_arrays"):
        OnDiskArrays(tmp_path / "nowhere")
    save_arrays(tmp_path, np.zeros((3, 2), np.float32), [0, 1, 0])
    (tmp_path / "y.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"y\.npy"):
        ondisk_data(tmp_path)


def test_mismatched_lengths_are_refused_when_written_and_when_read(tmp_path):
    with pytest.raises(DataError, match="5 examples but y has 4 labels"):
        save_arrays(tmp_path, np.zeros((5, 2)), np.zeros(4, np.int64))
    assert not (tmp_path / "x.npy").exists()
    np.save(tmp_path / "x.npy", np.zeros((5, 2), np.float32))
    np.save(tmp_path / "y.npy", np.zeros(4, np.int64))
    with pytest.raises(DataError, match=r"x\.npy has 5 examples but .*y\.npy has 4 labels"):
        OnDiskArrays(tmp_path)


def test_non_integer_labels_are_refused(tmp_path):
    with pytest.raises(DataError, match="labels in y must be integers, got dtype float64"):
        save_arrays(tmp_path, np.zeros((3, 2)), np.array([0.0, 1.5, 1.0]))
    np.save(tmp_path / "x.npy", np.zeros((3, 2), np.float32))
    np.save(tmp_path / "y.npy", np.array([0.0, 1.0, 1.0], np.float32))
    with pytest.raises(DataError, match="must be integers, got dtype float32"):
        ondisk_data(tmp_path)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.zeros(4, np.float32), r"shape \(N, \*input_shape\), got \(4,\)"),
        (np.array([["a", "b"]] * 4), "real numbers"),
    ],
)
def test_malformed_inputs_are_refused(tmp_path, x, match):
    with pytest.raises(DataError, match=match):
        save_arrays(tmp_path, x, [0, 1, 0, 1])


def test_a_foreign_file_is_a_data_error(tmp_path):
    save_arrays(tmp_path, np.zeros((3, 2), np.float32), [0, 1, 0])
    (tmp_path / "x.npy").write_bytes(b"not a numpy file at all")
    with pytest.raises(DataError, match=r"cannot read .*x\.npy' as a \.npy array"):
        OnDiskArrays(tmp_path)
    np.save(tmp_path / "x.npy", np.array([[None, 1]] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"cannot read .*x\.npy'"):
        OnDiskArrays(tmp_path)


@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [0, -1, 1, 2]])
def test_labels_outside_the_classes_name_the_range(tmp_path, labels):
    save_arrays(tmp_path, np.zeros((4, 2), np.float32), labels)
    lo, hi = min(labels), max(labels)
    with pytest.raises(DataError, match=rf"\[0, 3\).*found values in \[{lo}, {hi}\]"):
        ondisk_data(tmp_path, num_classes=3)


class _Relabelled(Dataset):
    """Items whose labels differ from the labels declared for the dataset."""

    def __init__(self, x: torch.Tensor, labels: list[int]) -> None:
        self.x, self.labels = x, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], self.labels[i]


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_dataset_yielding_labels_outside_the_classes_stops_training(tiny_splits, num_workers):
    train = tiny_splits.train
    labels = train.y.tolist()
    labels[5] = 7  # declared in range below, read out of range
    data = stream_data(
        _Relabelled(train.x, labels),
        num_classes=3,
        labels=train.y,
        loader=LoaderOptions(num_workers=num_workers),
    )
    with pytest.raises(DataError, match=r"labels read from the dataset must lie in \[0, 3\)"):
        fit(make_mlp(tiny_splits), data, loss_fn=onehot_ce, settings=SETTINGS, seed=0)


def test_declared_labels_outside_the_classes_are_refused(tiny_splits):
    train = tiny_splits.train
    with pytest.raises(DataError, match=r"\[0, 2\) \(num_classes = 2\), found values in \[0, 2\]"):
        stream_data(TensorDataset(train.x, train.y), num_classes=2)


def test_dropout_trains_to_the_same_weights_streamed_as_in_memory(tiny_splits):
    """A DataLoader draws its workers' base seed when iterated; from its own generator,
    not the global one that dropout uses, so both paths draw the same masks."""
    from bayesdistill.models import create_model
    from bayesdistill.seeding import seeded

    def network():
        with seeded(0):
            return create_model("mlp", (4,), 3, hidden=(16,), dropout=0.5)

    settings = TrainSettings(epochs=3, batch_size=16, lr=0.1)
    memory = fit(
        network(), tiny_splits.train, loss_fn=onehot_ce, settings=settings, seed=0, progress=False
    )
    streamed = stream_data(TensorDataset(tiny_splits.train.x, tiny_splits.train.y), num_classes=3)
    disk = fit(network(), streamed, loss_fn=onehot_ce, settings=settings, seed=0, progress=False)
    assert_same_weights(weights(memory.model), weights(disk.model))


def test_a_killed_streamed_run_resumes_to_the_uninterrupted_weights(tiny_splits, tmp_path):
    """Exact resume on the DataLoader path: the interrupted epoch is replayed in the same
    batch order with the same random state (dropout included)."""
    from bayesdistill.models import create_model
    from bayesdistill.seeding import seeded
    from bayesdistill.train.batches import LoaderBatches

    def network():
        with seeded(0):
            return create_model("mlp", (4,), 3, hidden=(16,), dropout=0.3)

    data = stream_data(TensorDataset(tiny_splits.train.x, tiny_splits.train.y), num_classes=3)
    settings = TrainSettings(epochs=4, batch_size=16, lr=0.1)

    def run(folder, resume=False):
        return fit(
            network(),
            data,
            loss_fn=onehot_ce,
            settings=settings,
            seed=2,
            run_dir=folder,
            resume=resume,
            progress=False,
        )

    full = run(tmp_path / "full")
    original = LoaderBatches.epoch

    def stop_at_two(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return original(self, epoch)

    LoaderBatches.epoch = stop_at_two
    try:
        with pytest.raises(KeyboardInterrupt):
            run(tmp_path / "part")
    finally:
        LoaderBatches.epoch = original
    resumed = run(tmp_path / "part", resume=True)
    assert resumed.resumed_from_epoch == 2
    assert_same_weights(weights(full.model), weights(resumed.model))
