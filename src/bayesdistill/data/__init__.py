"""Data: synthetic Gaussian mixtures with exact BCPs, MNIST-1D, your own ``.npz`` files.

Datasets are registered by name in `DATASETS`; each factory takes keyword-only options and
returns a `RawDataset`, which `make_splits` turns into standardised train/val/test sets.
"""

from bayesdistill.data.augment import AUGMENTATIONS, Augmentation
from bayesdistill.data.base import (
    ArrayData,
    DataSplits,
    RawDataset,
    Standardization,
    Standardizer,
    as_tensor_data,
    validate_arrays,
)
from bayesdistill.data.sources import mnist1d, npz, save_npz
from bayesdistill.data.splits import make_splits, per_class_subset, split_indices
from bayesdistill.data.synthetic import GaussianMixture, gaussian_mixture
from bayesdistill.registry import Registry

DATASETS: Registry = Registry("dataset")
DATASETS.register("synthetic")(gaussian_mixture)
DATASETS.register("mnist1d")(mnist1d)
DATASETS.register("npz")(npz)

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "ArrayData",
    "Augmentation",
    "DataSplits",
    "GaussianMixture",
    "RawDataset",
    "Standardization",
    "Standardizer",
    "as_tensor_data",
    "gaussian_mixture",
    "make_splits",
    "mnist1d",
    "npz",
    "per_class_subset",
    "save_npz",
    "split_indices",
    "validate_arrays",
]
