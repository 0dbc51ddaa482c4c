"""The training data sets by name: what ``--dataset`` selects.

Training and validation (:mod:`training.data`), ``evaluate_pose.py``,
``tools/make_coarse_poses.py`` and ``benchmarks/bench_loader.py`` build their
data set from :data:`DATASETS`. A new data set is one
:class:`datasets.mono_dataset.MonoDataset` subclass (image path, intrinsics,
optionally depth, coarse-pose scene, stereo) and one line here.
"""
from __future__ import annotations

from datasets.folder_dataset import FolderDataset
from datasets.kitti_dataset import KittiOdomDataset, KittiRawDataset
from datasets.mono_dataset import MonoDataset
from datasets.nyu_dataset import NYUDataset
from utils import GasMonoError

__all__ = ["DATASETS", "DATASET_NAMES", "STEREO_DATASETS", "dataset_class"]

DATASETS: dict[str, type[MonoDataset]] = {
    "nyu": NYUDataset,             # NYUv2 sequences, the release's layout (and the synthetic indoor set)
    "folder": FolderDataset,       # your own videos / image folders, tools/prepare_sequences.py
    "kitti": KittiRawDataset,      # KITTI raw drives, Monodepth2's layout
    "kitti_odom": KittiOdomDataset,  # KITTI odometry sequences
}

DATASET_NAMES = tuple(DATASETS)
STEREO_DATASETS = tuple(name for name, cls in DATASETS.items() if cls.has_stereo)


def dataset_class(name: str) -> type[MonoDataset]:
    """The data set class registered as ``name``.

    Raises:
        GasMonoError: an unknown name, listing the known ones.
    """
    if name not in DATASETS:
        raise GasMonoError(f"unknown dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
    return DATASETS[name]
