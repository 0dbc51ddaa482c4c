"""Your own sequences: frames from videos or image folders prepared by
``tools/prepare_sequences.py`` (:mod:`datasets.sequence_preparation`).

Layout (the NYUv2 layout with a camera of its own)::

    <data_path>/<sequence>/<frame:06d>.jpg     frames, numbered from 0
    <data_path>/<sequence>/cam.txt             3x3 pixel intrinsics (required)
    <data_path>/<sequence>/frames.txt          where each frame came from (not read here)

``cam.txt`` comes from ``--cam`` or ``--fov`` when the frames are prepared or,
when the camera is unknown, from COLMAP's estimate, which
``tools/make_coarse_poses.py --dataset folder`` writes. Split lines:
``<sequence> <frame> l``.
"""
from __future__ import annotations

from coarse_poses.sequences import read_intrinsics_file
from datasets.nyu_dataset import NYUDataset
from utils import GasMonoError

__all__ = ["FolderDataset"]


class FolderDataset(NYUDataset):
    """Prepared sequences with their own ``cam.txt`` (see the module docstring);
    the constructor and the items are those of :class:`datasets.mono_dataset.MonoDataset`."""

    unknown_intrinsics = "estimate"

    def check_folder(self, folder: str) -> None:
        """Every sequence has a readable ``cam.txt``."""
        path = self.get_intrinsics_path(folder)
        if not path.is_file():
            raise GasMonoError(
                f"intrinsics not found: {path} (prepare the frames with --cam or --fov, or let "
                "tools/make_coarse_poses.py --dataset folder estimate them)"
            )
        read_intrinsics_file(path)
