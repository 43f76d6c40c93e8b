"""Data: synthetic mixtures with exact BCPs, MNIST-1D, CIFAR-10/100, SVHN, ``.npz`` files.

Datasets are registered by name in `DATASETS`; each factory takes keyword-only options and
returns a `RawDataset`, which `make_splits` turns into standardised train/val/test sets.
"""

from bayesdistill.data.augment import (
    AUGMENTATIONS,
    Augmentation,
    RandomCrop,
    RandomHorizontalFlip,
    cifar_augmentation,
    crop,
    hflip,
)
from bayesdistill.data.base import (
    ArrayData,
    DataSplits,
    RawDataset,
    Standardization,
    Standardizer,
    as_tensor_data,
    validate_arrays,
)
from bayesdistill.data.ondisk import OnDiskArrays, ondisk_data, save_arrays
from bayesdistill.data.sources import mnist1d, npz, save_npz
from bayesdistill.data.splits import make_splits, per_class_subset, split_indices
from bayesdistill.data.stream import LabelledData, LoaderOptions, StreamData, stream_data
from bayesdistill.data.streamed import RawStream, arrays_on_disk, image_folder, make_stream_splits
from bayesdistill.data.synthetic import GaussianMixture, gaussian_mixture
from bayesdistill.data.vision import cifar10, cifar100, svhn
from bayesdistill.registry import Registry

DATASETS: Registry = Registry("dataset")
DATASETS.register("synthetic")(gaussian_mixture)
DATASETS.register("mnist1d")(mnist1d)
DATASETS.register("npz")(npz)
DATASETS.register("cifar10")(cifar10)
DATASETS.register("cifar100")(cifar100)
DATASETS.register("svhn")(svhn)
# read example by example from disk (tag `streamed`): splits hold StreamData
DATASETS.register("image_folder", streamed=True)(image_folder)
DATASETS.register("arrays_on_disk", streamed=True)(arrays_on_disk)

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "ArrayData",
    "Augmentation",
    "DataSplits",
    "GaussianMixture",
    "LabelledData",
    "LoaderOptions",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RawDataset",
    "RawStream",
    "Standardization",
    "Standardizer",
    "StreamData",
    "arrays_on_disk",
    "as_tensor_data",
    "cifar10",
    "cifar100",
    "cifar_augmentation",
    "crop",
    "gaussian_mixture",
    "hflip",
    "image_folder",
    "make_splits",
    "make_stream_splits",
    "mnist1d",
    "npz",
    "per_class_subset",
    "save_npz",
    "split_indices",
    "stream_data",
    "svhn",
    "validate_arrays",
]
__all__ += ["OnDiskArrays", "ondisk_data", "save_arrays"]
