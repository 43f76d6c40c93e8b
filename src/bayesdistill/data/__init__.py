"""Data: synthetic mixtures with exact BCPs, MNIST-1D, CIFAR-10/100, SVHN, ``.npz`` files,
image folders and memory-mapped arrays read from disk.

Datasets are registered by name in `DATASETS`; each factory takes keyword-only options and
returns a `RawDataset` (tensors) or a `RawStream` (read from disk example by example,
`StreamData`), which `make_splits` turns into standardised train/val/test sets.

Modules: `arrays` (`ArrayData`), `labelled` (`LabelledData`, `StreamData`), `standardize`,
`raw` (what a factory returns), `splits`, the sources (`synthetic`, `sources`, `vision`,
`stream_sources`), `memmap` (arrays on disk) and `augment`.
"""

from bayesdistill.data.arrays import ArrayData, as_tensor_data, validate_arrays
from bayesdistill.data.augment import (
    AUGMENTATIONS,
    Augmentation,
    RandomCrop,
    RandomHorizontalFlip,
    cifar_augmentation,
    crop,
    hflip,
)
from bayesdistill.data.labelled import LabelledData, LoaderOptions, StreamData, stream_data
from bayesdistill.data.memmap import OnDiskArrays, ondisk_data, save_arrays
from bayesdistill.data.raw import RawDataset, RawStream
from bayesdistill.data.sources import mnist1d, npz, save_npz
from bayesdistill.data.splits import (
    DataSplits,
    make_splits,
    make_stream_splits,
    per_class_subset,
    split_indices,
)
from bayesdistill.data.standardize import Standardization, Standardizer
from bayesdistill.data.stream_sources import arrays_on_disk, image_folder
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
