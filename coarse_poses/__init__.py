"""Coarse relative poses: the file format, COLMAP, and their evaluation.

A library over :mod:`utils` only (``datasets`` reads pose files through
:mod:`coarse_poses.pose_files` and lists its image sequences with
:mod:`coarse_poses.sequences`, both leaf modules over :mod:`utils`):

* :mod:`coarse_poses.pose_files`: the format of ``<cpose_dir>/<scene>/<frame:04d>.npy``
  (slot order, conversion from extrinsics, writer, validating reader, listing);
* :mod:`coarse_poses.sequences`: the image sequences COLMAP runs on (frames,
  intrinsics or their estimation, the scene their poses go to) and ``cam.txt``;
* :mod:`coarse_poses.colmap`: COLMAP (pycolmap) on one sequence;
* :mod:`coarse_poses.runner`: many sequences in parallel, resumable, and the
  split-list modes of ``tools/make_coarse_poses.py``;
* :mod:`coarse_poses.summary`: per-sequence summary tables and JSON;
* :mod:`coarse_poses.evaluation`: errors of relative poses against ground truth.
"""
