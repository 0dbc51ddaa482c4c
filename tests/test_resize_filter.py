"""The fast area-averaging pyramid against the release's LANCZOS pyramid."""
from __future__ import annotations

import pytest
import torch

from datasets.nyu_dataset import NYUDataset
from synthetic.dataset import generate_dataset
from utils import GasMonoError


@pytest.fixture(scope="module")
def scene_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("resize")
    generate_dataset(root, num_scenes=1, frames_per_scene=3, num_test=0, height=240, width=320,
                     num_low_texture=0, seed=1, progress=False)
    return root / "train"


def test_area_pyramid_is_close_to_lanczos(scene_root):
    items = {}
    for resize_filter in ("lanczos", "area"):
        dataset = NYUDataset(scene_root, ["scene_0000 1 l"], 128, 160, [0, -1, 1], 4, resize_filter=resize_filter)
        items[resize_filter] = dataset[0]
    for scale in range(4):
        lanczos = items["lanczos"][("color", 0, scale)]
        area = items["area"][("color", 0, scale)]
        assert area.shape == lanczos.shape == (3, 128 // 2**scale, 160 // 2**scale)
        assert area.dtype == torch.float32 and 0 <= area.min() and area.max() <= 1
        assert (area - lanczos).abs().mean() < 0.03
        assert not torch.equal(area, lanczos)


def test_unknown_resize_filter_is_rejected(scene_root):
    with pytest.raises(GasMonoError, match="unknown resize filter"):
        NYUDataset(scene_root, ["scene_0000 1 l"], 128, 160, [0, -1, 1], 4, resize_filter="bilinear")
