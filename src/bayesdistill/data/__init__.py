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

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "ArrayData",
    "Augmentation",
    "DataSplits",
    "GaussianMixture",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RawDataset",
    "Standardization",
    "Standardizer",
    "as_tensor_data",
    "cifar10",
    "cifar100",
    "cifar_augmentation",
    "crop",
    "gaussian_mixture",
    "hflip",
    "make_splits",
    "mnist1d",
    "npz",
    "per_class_subset",
    "save_npz",
    "split_indices",
    "svhn",
    "validate_arrays",
]
__all__ += ["OnDiskArrays", "ondisk_data", "save_arrays"]
