"""Synthetic indoor sequences rendered on the CPU by ray casting.

Nothing real can be downloaded on our machines, so the project bundles this
generator: it renders small indoor video sequences and a held-out test set in
exactly the NYUv2 layouts the rest of the project reads, so that coarse poses
(COLMAP), training and evaluation run end to end, and tests have real data.
The output is a function of the seed, bit for bit.

* :mod:`synthetic.textures`: tiled materials, posters and non-repeating overlays;
* :mod:`synthetic.rooms`: box rooms with furniture and a light (the world frame);
* :mod:`synthetic.trajectories`: handheld-like camera paths and test views;
* :mod:`synthetic.renderer`: ray casting of one view (colour and z-depth);
* :mod:`synthetic.dataset`: the plan of scenes and the writer (:func:`synthetic.dataset.generate_dataset`);
* :mod:`synthetic.kitti`: the same rooms in KITTI's raw layout (stereo cameras, calibration files,
  velodyne scans; :func:`synthetic.kitti.generate_kitti_raw`);
* :mod:`synthetic.video`: a rendered walk as a video file (:func:`synthetic.video.render_video`).

``poses.txt`` holds world-to-camera matrices ``E_i`` (read by
``coarse_poses.evaluation.load_gt_poses``); the relative pose from a target
frame ``t`` to a source frame ``s`` is ``T_{t->s} = E_s @ inv(E_t)``
(``coarse_poses.pose_files.relative_pose``): it maps points in the target
camera frame into the source camera frame.
"""
