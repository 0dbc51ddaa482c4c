"""Tests of the training data sets, augmentation and split helpers on a tiny synthetic set."""
from __future__ import annotations

import logging
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.data import astronaut

from coarse_poses.evaluation import load_gt_poses
from coarse_poses.pose_files import filter_items_with_coarse_poses, relative_pose
from datasets.eval_kitti import parse_kitti_split
from datasets.eval_nyu import DEFAULT_SPLIT_DIR as NYU_TEST_SPLIT_DIR
from datasets.folder_dataset import FolderDataset
from datasets.mono_dataset import MonoDataset, load_split
from datasets.nyu_dataset import NYUDataset
from datasets.nyu_test_preparation import SHIPPED_TEST_LIST, read_test_list
from datasets.registry import DATASETS, STEREO_DATASETS, dataset_class
from datasets.splits import find_sequence_items, read_split_items, write_split_files
from layers import BackprojectDepth, Project3D, warp_image
from losses import SSIM, photometric_error
from options import GasMonoOptions
from synthetic.dataset import generate_dataset
from tools import export_kitti_gt, make_split
from training.data import make_dataset as make_training_dataset
from training.data import split_dir_of
from utils import PROJECT_ROOT, GasMonoError

HEIGHT, WIDTH = 96, 128
FRAMES = [0, -1, 1]
NUM_FRAMES = 6


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """3 scenes x 6 frames at 96 x 128 (one low-texture), a split and GT coarse poses."""
    root = tmp_path_factory.mktemp("synthetic_set")
    summary = generate_dataset(root, num_scenes=3, frames_per_scene=NUM_FRAMES, num_test=0, height=HEIGHT,
                               width=WIDTH, num_low_texture=1, seed=7, progress=False)
    data_path = root / "train"
    items = find_sequence_items(data_path)
    lines = [f"{scene} {frame:04d} l" for scene, frame in items]
    cpose_dir = root / "cpose"
    for scene in {scene for scene, _ in items}:
        poses = load_gt_poses(data_path / scene / "poses.txt")
        (cpose_dir / scene).mkdir(parents=True)
        for frame in range(1, NUM_FRAMES - 1):
            pair = np.stack([relative_pose(poses[frame], poses[frame + offset]) for offset in (-1, 1)])
            np.save(cpose_dir / scene / f"{frame:04d}.npy", pair.astype(np.float32))
    return {"root": root, "data_path": data_path, "lines": lines, "cpose_dir": cpose_dir, "summary": summary}


def make_dataset(synthetic: dict, **kwargs) -> NYUDataset:
    options = dict(height=HEIGHT, width=WIDTH, frame_idxs=FRAMES, num_scales=4)
    options.update(kwargs)
    return NYUDataset(synthetic["data_path"], synthetic["lines"], **options)


def test_items_keys_shapes_and_ranges(synthetic: dict) -> None:
    dataset = make_dataset(synthetic, height=64, width=80, load_depth=True, cpose_dir=synthetic["cpose_dir"])
    assert len(dataset) == 3 * (NUM_FRAMES - 2)
    item = dataset[0]
    expected = {(key, f, s) for key in ("color", "color_aug") for f in FRAMES for s in range(4)}
    expected |= {("K", s) for s in range(4)} | {("inv_K", s) for s in range(4)}
    expected |= {("pose_gt", -1), ("pose_gt", 1), "depth_gt"}
    assert set(item) == expected
    for f in FRAMES:
        for s in range(4):
            for key in ("color", "color_aug"):
                tensor = item[(key, f, s)]
                assert tensor.shape == (3, 64 // 2**s, 80 // 2**s) and tensor.dtype == torch.float32
                assert 0.0 <= float(tensor.min()) and float(tensor.max()) <= 1.0 and float(tensor.std()) > 0.01
    depth = item["depth_gt"]
    assert depth.shape == (1, HEIGHT, WIDTH) and depth.dtype == torch.float32
    assert 0.3 <= float(depth.min()) and float(depth.max()) <= 10.0
    for key in (("pose_gt", -1), ("pose_gt", 1)):
        assert item[key].shape == (4, 4) and item[key].dtype == torch.float32


def test_intrinsics_per_scale(synthetic: dict, tmp_path: Path) -> None:
    item = make_dataset(synthetic, height=64, width=80)[0]
    for s in range(4):
        K, inv_K = item[("K", s)].double(), item[("inv_K", s)].double()
        width, height = 80 // 2**s, 64 // 2**s
        # cam.txt holds NYUv2's intrinsics, so the normalised values are the release's.
        np.testing.assert_allclose([K[0, 0], K[0, 2], K[1, 1], K[1, 2]],
                                   [0.81 * width, 0.51 * width, 1.08 * height, 0.53 * height], rtol=1e-5)
        np.testing.assert_allclose((K @ inv_K).numpy(), np.eye(4), atol=1e-5)
    # Without cam.txt the NYUv2 defaults apply; a different cam.txt is normalised by the image size.
    data_path = tmp_path / "scenes"
    scene = synthetic["lines"][0].split()[0]
    shutil.copytree(synthetic["data_path"] / scene, data_path / scene)
    (data_path / scene / "cam.txt").unlink()
    lines = [line for line in synthetic["lines"] if line.startswith(scene)]
    K = NYUDataset(data_path, lines, 64, 80, FRAMES, 4)[0][("K", 0)]
    np.testing.assert_allclose(K[:2, :3].numpy(), [[0.81 * 80, 0, 0.51 * 80], [0, 1.08 * 64, 0.53 * 64]], rtol=1e-6)
    np.savetxt(data_path / scene / "cam.txt", [[64.0, 0, 60.0], [0, 48.0, 40.0], [0, 0, 1]])
    K = NYUDataset(data_path, lines, 64, 80, FRAMES, 4)[0][("K", 1)]
    np.testing.assert_allclose(K[:2, :3].numpy(), [[64 / 128 * 40, 0, 60 / 128 * 40], [0, 48 / 96 * 32, 40 / 96 * 32]],
                               rtol=1e-6)


def test_gt_depth_and_pose_explain_the_motion(synthetic: dict) -> None:
    """Warping the sources into the target with GT depth, the coarse poses (E_s inv(E_t)) and K
    reproduces the target far better than the unwarped source does."""
    textured = {name for name, scene in synthetic["summary"]["scenes"].items() if scene["kind"] == "textured"}
    lines = [line for line in synthetic["lines"] if line.split()[0] in textured]
    dataset = NYUDataset(synthetic["data_path"], lines, HEIGHT, WIDTH, FRAMES, 1, load_depth=True,
                         cpose_dir=synthetic["cpose_dir"])
    batch = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
    backproject, project, ssim = BackprojectDepth(HEIGHT, WIDTH), Project3D(HEIGHT, WIDTH), SSIM()
    target = batch[("color", 0, 0)]
    for offset in (-1, 1):
        source = batch[("color", offset, 0)]
        warped = warp_image(source, batch["depth_gt"], batch[("K", 0)], batch[("inv_K", 0)], batch[("pose_gt", offset)],
                            backproject, project)
        identity_error = photometric_error(source, target, ssim).mean()
        warped_error = photometric_error(warped, target, ssim).mean()
        assert warped_error < 0.4 * identity_error, (offset, float(warped_error), float(identity_error))
        # A wrong convention (the inverse pose) does not explain the motion.
        wrong = warp_image(source, batch["depth_gt"], batch[("K", 0)], batch[("inv_K", 0)],
                           torch.linalg.inv(batch[("pose_gt", offset)]), backproject, project)
        assert photometric_error(wrong, target, ssim).mean() > 2 * warped_error


def test_coarse_poses_loaded_into_pose_gt(synthetic: dict) -> None:
    dataset = make_dataset(synthetic, cpose_dir=synthetic["cpose_dir"])
    scene, frame, _ = dataset.items[2]
    stored = np.load(synthetic["cpose_dir"] / scene / f"{frame:04d}.npy")
    item = dataset[2]
    np.testing.assert_array_equal(item[("pose_gt", -1)].numpy(), stored[0])
    np.testing.assert_array_equal(item[("pose_gt", 1)].numpy(), stored[1])
    assert ("pose_gt", -1) not in make_dataset(synthetic)[2]


def test_bad_inputs_give_one_line_errors(synthetic: dict, tmp_path: Path) -> None:
    with pytest.raises(GasMonoError, match="data path not found: .*missing"):
        NYUDataset(tmp_path / "missing", synthetic["lines"], HEIGHT, WIDTH, FRAMES, 4)
    scene = synthetic["lines"][0].split()[0]
    last = f"{scene} {NUM_FRAMES - 1:04d} l"
    with pytest.raises(GasMonoError, match=f"missing neighbour frame \\+1: .*{scene}/{NUM_FRAMES:06d}.jpg"):
        NYUDataset(synthetic["data_path"], [last], HEIGHT, WIDTH, FRAMES, 4)
    split = tmp_path / "train_files.txt"
    split.write_text(f"{synthetic['lines'][0]}\n\n{scene} 12x l\n")
    with pytest.raises(GasMonoError, match=f"{split} line 3: frame '12x'"):
        NYUDataset(synthetic["data_path"], split, HEIGHT, WIDTH, FRAMES, 4)
    with pytest.raises(GasMonoError, match="line 3"):
        load_split(split)
    split.write_text(f"{scene}\n")
    with pytest.raises(GasMonoError, match="line 1: expected '<folder> <frame> <side>'"):
        load_split(split)
    cpose_dir = tmp_path / "cpose"
    shutil.copytree(synthetic["cpose_dir"], cpose_dir)
    bad = cpose_dir / scene / "0002.npy"
    np.save(bad, np.zeros((4, 4), np.float32))
    with pytest.raises(GasMonoError, match=f"coarse poses {bad} have shape \\(4, 4\\), expected \\(2, 4, 4\\)"):
        NYUDataset(synthetic["data_path"], [f"{scene} 0002 l"], HEIGHT, WIDTH, FRAMES, 4, cpose_dir=cpose_dir)
    bad.unlink()
    with pytest.raises(GasMonoError, match=f"coarse pose file missing: {bad}"):
        NYUDataset(synthetic["data_path"], [f"{scene} 0002 l"], HEIGHT, WIDTH, FRAMES, 4, cpose_dir=cpose_dir)


def test_coarse_poses_are_checked_when_the_data_set_is_built(synthetic: dict, tmp_path: Path) -> None:
    scene = synthetic["lines"][0].split()[0]
    cpose_dir = tmp_path / "cpose"
    shutil.copytree(synthetic["cpose_dir"], cpose_dir)
    split = tmp_path / "train_files.txt"
    split.write_text(f"{scene} 0001 l\n\n{scene} 0003 l\n")
    bad = cpose_dir / scene / "0003.npy"
    poses = np.load(bad)
    poses[1, 0, 3] = np.nan
    np.save(bad, poses)
    with pytest.raises(GasMonoError) as info:
        NYUDataset(synthetic["data_path"], split, HEIGHT, WIDTH, FRAMES, 4, cpose_dir=cpose_dir)
    assert str(info.value) == (f"coarse poses {bad} contain non-finite values "
                               f"(needed by {split} line 3: '{scene} 0003 l')")
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(GasMonoError, match=f"cannot read coarse poses {bad}: .*line 3"):
        NYUDataset(synthetic["data_path"], split, HEIGHT, WIDTH, FRAMES, 4, cpose_dir=cpose_dir)


def test_unreadable_frames_and_split_files_are_one_line_errors(synthetic: dict, tmp_path: Path) -> None:
    """A truncated JPEG and a text file named .jpg: one line naming the file and
    the split line, also from inside DataLoader workers; a split file that is
    not UTF-8: one line naming it."""
    scene = synthetic["lines"][0].split()[0]
    data_path = tmp_path / "scenes"
    shutil.copytree(synthetic["data_path"] / scene, data_path / scene)
    truncated = data_path / scene / "000002.jpg"
    truncated.write_bytes(truncated.read_bytes()[:400])
    not_an_image = data_path / scene / "000004.jpg"
    not_an_image.write_text("not an image")
    split = tmp_path / "train_files.txt"
    split.write_text(f"{scene} 0001 l\n{scene} 0002 l\n{scene} 0003 l\n{scene} 0004 l\n")
    dataset = NYUDataset(data_path, split, HEIGHT, WIDTH, FRAMES, 4)
    with pytest.raises(GasMonoError) as info:
        dataset[1]
    message = str(info.value)
    assert message.startswith(f"cannot read image {truncated}: ") and "\n" not in message
    assert message.endswith(f"(item of {split} line 2: '{scene} 0002 l')")
    with pytest.raises(GasMonoError, match=f"cannot read image {not_an_image}: .*line 4: '{scene} 0004 l'"):
        dataset[3]

    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=2)
    with pytest.raises(GasMonoError) as info:
        list(loader)
    assert str(info.value).startswith(f"cannot read image {truncated}: ") and "\n" not in str(info.value)

    split.write_bytes(f"{scene} 0001 l\n{scene} 0002 \xe9\n".encode("latin-1"))
    with pytest.raises(GasMonoError) as info:
        NYUDataset(data_path, split, HEIGHT, WIDTH, FRAMES, 4)
    assert str(info.value) == f"split file {split} line 2: not UTF-8 text (byte 0xe9); is it a text file?"


def test_augmentation_modes(synthetic: dict) -> None:
    plain = make_dataset(synthetic)[1]
    for mode in ("strong", "colorjitter"):
        dataset = make_dataset(synthetic, is_train=True, augmentation=mode)
        changed = 0
        for seed in range(8):
            random.seed(seed)
            item = dataset[1]
            for f in FRAMES:
                for s in range(4):
                    assert torch.equal(item[("color", f, s)], plain[("color", f, s)])
                for s in range(1, 4):
                    assert torch.equal(item[("color_aug", f, s)], item[("color", f, s)])
            changed += not torch.equal(item[("color_aug", 0, 0)], item[("color", 0, 0)])
            random.seed(seed)
            again = dataset[1]
            assert all(torch.equal(again[("color_aug", f, 0)], item[("color_aug", f, 0)]) for f in FRAMES)
        assert 1 <= changed <= 7, mode  # each item is augmented with probability 0.5
    dataset = make_dataset(synthetic, is_train=True, augmentation="none")
    for seed in range(4):
        random.seed(seed)
        item = dataset[1]
        assert all(torch.equal(item[("color_aug", f, 0)], plain[("color", f, 0)]) for f in FRAMES)
    evaluation = make_dataset(synthetic, is_train=False, augmentation="strong")[1]
    assert torch.equal(evaluation[("color_aug", 0, 0)], plain[("color", 0, 0)])


def test_colorjitter_shares_one_draw_across_frames(synthetic: dict) -> None:
    """A brightness/contrast/saturation/hue draw shared by the frames keeps their
    augmented/plain relation alike; the strong recipe draws per frame."""
    dataset = make_dataset(synthetic, is_train=True, augmentation="colorjitter")
    for seed in range(20):
        random.seed(seed)
        item = dataset[1]
        if not torch.equal(item[("color_aug", 0, 0)], item[("color", 0, 0)]):
            break
    ratios = [float(item[("color_aug", f, 0)].mean() / item[("color", f, 0)].mean()) for f in FRAMES]
    assert max(ratios) - min(ratios) < 0.05 and abs(ratios[0] - 1) > 0.01
    with pytest.raises(GasMonoError, match="unknown augmentation 'flip'"):
        make_dataset(synthetic, augmentation="flip")


def test_split_helpers_and_cli(synthetic: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    items = find_sequence_items(synthetic["data_path"])
    assert len(items) == 3 * (NUM_FRAMES - 2)
    assert {frame for _, frame in items} == set(range(1, NUM_FRAMES - 1))
    train_path, val_path = write_split_files(items, tmp_path / "split", val_fraction=0.25, seed=1)
    train, val = load_split(train_path), load_split(val_path)
    assert len(val) == 3 and len(train) == 9
    assert sorted(train + val) == sorted(f"{scene} {frame:04d} l" for scene, frame in items)
    assert write_split_files(items, tmp_path / "again", 0.25, seed=1)[1].read_text() == val_path.read_text()
    assert write_split_files(items, tmp_path / "other", 0.25, seed=2)[1].read_text() != val_path.read_text()

    cpose_dir = tmp_path / "cpose"
    shutil.copytree(synthetic["cpose_dir"], cpose_dir)
    scene = items[0][0]
    (cpose_dir / scene / "0001.npy").unlink()
    kept = filter_items_with_coarse_poses(items, cpose_dir)
    assert len(kept) == len(items) - 1 and (scene, 1) not in kept
    make_split.main([str(synthetic["data_path"]), str(tmp_path / "cli"), "--cpose_dir", str(cpose_dir),
                     "--val_fraction", "0"])
    assert "12 items with both neighbours; 11 kept from 3 scenes" in capsys.readouterr().out
    assert len(load_split(tmp_path / "cli" / "train_files.txt")) == 11
    assert (tmp_path / "cli" / "val_files.txt").read_text() == ""
    with pytest.raises(SystemExit) as exit_info:
        make_split.main([str(tmp_path / "nowhere"), str(tmp_path / "cli")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: data path not found: {tmp_path / 'nowhere'}"


def test_the_release_split_lists_ship_and_are_the_defaults() -> None:
    nyu, eigen = PROJECT_ROOT / "splits" / "nyu", PROJECT_ROOT / "splits" / "eigen"
    train, val = read_split_items(nyu / "train_files.txt"), read_split_items(nyu / "val_files.txt")
    assert (len(train), len(val)) == (22159, 3166)
    assert len({scene for _, scene, _ in train + val}) == 323
    assert train[0] == ("kitchen_0045a 0009 l", "kitchen_0045a", 9)
    test = read_test_list(nyu / "test_files.txt")
    assert len(test) == 654 and test == sorted(set(test)) and 1 <= test[0] and test[-1] <= 1449
    assert len(parse_kitti_split(eigen / "test_files.txt")) == 697

    options = GasMonoOptions().parse([])
    assert options.split == "nyu" and split_dir_of(options) == nyu
    assert NYU_TEST_SPLIT_DIR == nyu and SHIPPED_TEST_LIST == nyu / "test_files.txt"
    assert export_kitti_gt.build_parser().parse_args(["--data_path", "k"]).split_file == eigen / "test_files.txt"


def test_the_kitti_split_lists_ship_verbatim() -> None:
    zhou, benchmark = PROJECT_ROOT / "splits" / "eigen_zhou", PROJECT_ROOT / "splits" / "eigen_benchmark"
    train, val = parse_kitti_split(zhou / "train_files.txt"), parse_kitti_split(zhou / "val_files.txt")
    assert (len(train), len(val), len(parse_kitti_split(benchmark / "test_files.txt"))) == (39810, 4424, 652)
    assert train[0] == ("2011_09_26/2011_09_26_drive_0022_sync", 473, 3)
    assert {camera for _, _, camera in train} == {2, 3}
    assert len(load_split(zhou / "train_files.txt")) == 39810  # the training loader reads them too
    options = GasMonoOptions().parse(["--dataset", "kitti", "--split", "eigen_zhou"])
    assert split_dir_of(options) == zhou


def test_the_registry_builds_the_named_dataset(synthetic: dict, tmp_path: Path) -> None:
    assert set(DATASETS) == {"nyu", "folder", "kitti", "kitti_odom"}
    assert all(issubclass(cls, MonoDataset) for cls in DATASETS.values())
    assert STEREO_DATASETS == ("kitti", "kitti_odom")
    with pytest.raises(GasMonoError, match="unknown dataset 'scannet'; known: nyu, folder, kitti, kitti_odom"):
        dataset_class("scannet")
    split_dir = tmp_path / "split"
    split_dir.mkdir()
    (split_dir / "train_files.txt").write_text("\n".join(synthetic["lines"]) + "\n")
    flags = ["--data_path", str(synthetic["data_path"]), "--split_dir", str(split_dir), "--height", "64",
             "--width", "96", "--augmentation", "none"]
    for name, cls in (("nyu", NYUDataset), ("folder", FolderDataset)):  # the synthetic scenes have cam.txt
        dataset = make_training_dataset(GasMonoOptions().parse([*flags, "--dataset", name]), "train_files.txt", True)
        assert type(dataset) is cls and len(dataset) == len(synthetic["lines"])


def test_stereo_frames_need_a_stereo_dataset(synthetic: dict) -> None:
    with pytest.raises(GasMonoError, match="NYUDataset has one camera: frame id 's' \\(--use_stereo\\)"):
        make_dataset(synthetic, frame_idxs=[0, -1, 1, "s"])
    with pytest.raises(GasMonoError, match="frame ids are integer offsets or 's', got 'x'"):
        make_dataset(synthetic, frame_idxs=[0, "x"])


def test_jpegs_are_decoded_at_full_size_whatever_the_network_size(tmp_path: Path) -> None:
    """At 224 x 320 from 640 x 480 frames a reduced-size JPEG decode (``Image.draft``) gave other pixels
    than the release's full decode and resize (mean 3.2 / 255)."""
    scene = tmp_path / "room"
    scene.mkdir()
    photo = Image.fromarray(astronaut()).resize((640, 480), Image.Resampling.BICUBIC)
    for frame in range(3):
        photo.rotate(3 * frame).save(scene / f"{frame:06d}.jpg", quality=95)
    for height, width in ((224, 320), (256, 320), (96, 128)):
        item = NYUDataset(tmp_path, ["room 1 l"], height, width, [0], 1)[0]
        with Image.open(scene / "000001.jpg") as image:
            expected = np.asarray(image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS))
        np.testing.assert_array_equal((item[("color", 0, 0)].permute(1, 2, 0).numpy() * 255).round(), expected)


@pytest.mark.parametrize("matrix, problem", [
    ("nan 0 60\n0 48 40\n0 0 1\n", "NaN or infinity in the matrix"),
    ("64 0 60\n0 inf 40\n0 0 1\n", "NaN or infinity in the matrix"),
    ("0 0 60\n0 48 40\n0 0 1\n", "focal lengths fx = 0, fy = 48; both must be positive"),
    ("64 0 60 0\n0 48 40 0\n0 0 1 0\n", r"shape \(3, 4\), expected 3x3"),
    ("64 0 60\n0 48 40\n", r"shape \(2, 3\), expected 3x3"),
    ("64 0 60\n0 48 40\n0 0 0\n", r"last row \[0.0, 0.0, 0.0\], expected \[0, 0, 1\]"),
    ("64 0 60\n0 48 forty\n0 0 1\n", "cannot read intrinsics"),
])
def test_unusable_intrinsics_fail_at_build_naming_the_file(synthetic: dict, tmp_path: Path, matrix: str,
                                                           problem: str) -> None:
    """Before, a NaN cam.txt built fine and failed at the first item as
    ``LinAlgError: SVD did not converge``, naming no file."""
    data_path = tmp_path / "scenes"
    scene = synthetic["lines"][0].split()[0]
    shutil.copytree(synthetic["data_path"] / scene, data_path / scene)
    cam = data_path / scene / "cam.txt"
    cam.write_text(matrix)
    lines = [line for line in synthetic["lines"] if line.startswith(scene)]
    with pytest.raises(GasMonoError) as info:
        NYUDataset(data_path, lines, 64, 80, FRAMES, 1)
    message = str(info.value)
    assert str(cam) in message and "\n" not in message
    assert re.search(problem, message), message


def test_duplicate_split_lines_are_reported_once(synthetic: dict, tmp_path: Path, caplog) -> None:
    lines = synthetic["lines"][:3]
    scene, frame, _ = lines[1].split()
    split = tmp_path / "train_files.txt"
    # line 4 repeats line 2 written another way, line 5 repeats line 1
    split.write_text("\n".join([*lines, f"{scene} {int(frame)} l", lines[0]]) + "\n")
    with caplog.at_level(logging.WARNING, logger="datasets.mono_dataset"):
        dataset = NYUDataset(synthetic["data_path"], split, HEIGHT, WIDTH, FRAMES, 1)
    assert len(dataset) == 5
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings == [f"split file {split}: 2 duplicate line(s), the first at line 4 ('{scene} {int(frame)} l' "
                        f"repeats line 2); each is read as often as it is listed"]
    with pytest.raises(GasMonoError, match=r"2 duplicate line\(s\), the first at line 4 .*\(--strict_splits\)$"):
        NYUDataset(synthetic["data_path"], split, HEIGHT, WIDTH, FRAMES, 1, strict_splits=True)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="datasets.mono_dataset"):
        NYUDataset(synthetic["data_path"], synthetic["lines"], HEIGHT, WIDTH, FRAMES, 1)
        load_split(PROJECT_ROOT / "splits" / "nyu" / "train_files.txt")
    assert not caplog.records
