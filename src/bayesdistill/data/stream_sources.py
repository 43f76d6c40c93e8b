"""Datasets read from disk example by example: image folders and memory-mapped arrays.

Each factory returns a `RawStream` (a training pool and optionally its own test set, as
`StreamData` without standardisation); `bayesdistill.data.splits.make_splits` splits it
into train / validation / test `StreamData` as it splits in-memory data, and fits the
standardisation to the training split in one pass over it. Nothing but the labels is held
in memory.

- ``image_folder``: torchvision's ``ImageFolder`` (``root/train/<class>/*.png`` and
  optionally ``root/test/<class>/*``), images resized to ``size × size`` RGB.
- ``arrays_on_disk``: arrays written by `bayesdistill.data.memmap.save_arrays`
  (``root/train/{x,y}.npy`` and optionally ``root/test/``), memory-mapped.
"""

from __future__ import annotations

from pathlib import Path

from bayesdistill.data.labelled import stream_data
from bayesdistill.data.memmap import ondisk_data
from bayesdistill.data.raw import RawStream
from bayesdistill.errors import ConfigError, DataError, DataFileNotFoundError


def image_folder(*, root: str, size: int = 32) -> RawStream:
    """Images in class folders (torchvision ``ImageFolder``): ``root/train/<class>/...``
    and, if present, ``root/test/<class>/...``; resized to ``size × size`` RGB in [0, 1].

    Class indices follow the sorted folder names of ``root/train``.
    """
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import Compose, Resize, ToTensor

    if size < 1:
        raise ConfigError(f"size must be >= 1, got {size}")
    base = Path(root)
    train_dir = base / "train"
    if not train_dir.is_dir():
        raise DataFileNotFoundError(
            f"image_folder: no training folder '{train_dir}'; expected "
            f"{base}/train/<class name>/<image files> (and optionally {base}/test/...)"
        )
    transform = Compose([Resize((size, size)), _RGB(), ToTensor()])
    train = ImageFolder(str(train_dir), transform=transform)
    test = None
    if (base / "test").is_dir():
        test = ImageFolder(str(base / "test"), transform=transform)
        if test.classes != train.classes:
            raise DataError(
                f"image_folder: the test classes {test.classes} differ from the training "
                f"classes {train.classes}"
            )
    num_classes = len(train.classes)
    return RawStream(
        "image_folder",
        stream_data(train, num_classes=num_classes),
        None if test is None else stream_data(test, num_classes=num_classes),
    )


class _RGB:
    """Convert a PIL image to RGB (grey and palette images get three channels)."""

    def __call__(self, image):  # type: ignore[no-untyped-def]
        return image.convert("RGB")


def arrays_on_disk(*, root: str, num_classes: int | None = None) -> RawStream:
    """Memory-mapped arrays ``root/train/{x,y}.npy`` (and ``root/test/`` if present),
    written by `bayesdistill.data.memmap.save_arrays`."""
    base = Path(root)
    train = ondisk_data(base / "train", num_classes=num_classes)
    test = None
    if (base / "test").is_dir():
        test = ondisk_data(base / "test", num_classes=train.num_classes)
    return RawStream("arrays_on_disk", train, test)
