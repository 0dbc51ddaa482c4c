"""Synthetic indoor sequences rendered on the CPU by ray casting.

Nothing real can be downloaded on our machines, so the project bundles this
generator: it renders small indoor video sequences and a held-out test set in
exactly the NYUv2 layouts the rest of the project reads, so that coarse poses
(COLMAP), training and evaluation run end to end, and tests have real data.

World frame: ``x`` right, ``y`` down, ``z`` forward (the camera convention of
OpenCV); a room is the box ``[0, Lx] x [0, Ly] x [0, Lz]`` with the ceiling at
``y = 0`` and the floor at ``y = Ly``. Furniture boxes stand on the floor along
the walls; the camera moves in a safe region away from walls and furniture.
Depth is the ``z`` coordinate in the camera frame (as a Kinect measures it),
and the pixel ``(u, v)`` (integer pixel centres) looks along
``K^-1 [u, v, 1]^T``, the convention of ``layers.BackprojectDepth``.

Output layout (:func:`generate_dataset`)::

    <out>/train/<scene>/<frame:06d>.jpg        RGB, JPEG quality 95, frames from 0
    <out>/train/<scene>/cam.txt                3x3 pixel intrinsics (np.savetxt)
    <out>/train/<scene>/depth/<frame:06d>.png  uint16 depth in millimetres
    <out>/train/<scene>/poses.txt              per frame 16 floats: row-major 4x4 world-to-camera E_i
    <out>/test/color/<i:04d>.png               RGB test images, i = 1..N
    <out>/test/gt_depths.npz                   key "data": float32 N x H x W, metres
    <out>/test/test_files.txt                  lines "color <i:04d> l"
    <out>/scenes.json                          per scene: split, kind, room size, seed, frames

``tools.pose_evaluation.load_gt_poses`` reads ``poses.txt``. The relative pose
from a target frame ``t`` to a source frame ``s`` is ``T_{t->s} = E_s @ inv(E_t)``
(``tools.colmap_poses.relative_pose``): it maps points in the target camera
frame into the source camera frame.

Textured surfaces are a tiled material (period 1.3-2 m) under an overlay that
covers the whole surface without repeating, so that no view holds two copies
of a pattern for SIFT to confuse; low-texture rooms are plain paint.
"""
from __future__ import annotations

import functools
import json
import logging
import multiprocessing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np
import skimage.data
from PIL import Image
from tqdm import tqdm

from utils import GasMonoError, atomic_write_text, nyu_pixel_intrinsics

logger = logging.getLogger(__name__)

TEXTURED = "textured"
LOW_TEXTURE = "low_texture"

_POSTER_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "cat")
_GRAY_TEXTURES = ("brick", "gravel", "grass")
_TEXTURE_SIZE = 512
_MIP_LEVELS = 5
_WALL_BAND = 0.7  # furniture stands within this distance of a wall (m)
_CLEARANCE = 0.55  # minimum horizontal distance from the camera to furniture (m)
_OVERLAY_TEXEL = 0.006  # metres per texel of the non-repeating surface overlays
_STEP_RANGE = (0.038, 0.052)  # camera translation between consecutive frames (m)
_JPEG_QUALITY = 95


# ---------------------------------------------------------------------------
# Textures
# ---------------------------------------------------------------------------


def _mip_pyramid(image: np.ndarray) -> list[np.ndarray]:
    """Mip levels of an ``h x w x 3`` float32 image, each half the size of the previous."""
    levels = [np.ascontiguousarray(image, dtype=np.float32)]
    while len(levels) < _MIP_LEVELS and min(levels[-1].shape[:2]) >= 8:
        previous = levels[-1]
        size = (previous.shape[1] // 2, previous.shape[0] // 2)
        levels.append(cv2.resize(previous, size, interpolation=cv2.INTER_AREA))
    return levels


def _mip_level(footprint: np.ndarray, texel_size: float, levels: int) -> np.ndarray:
    """Per pixel, the mip level whose texels are at least as large as the pixel footprint."""
    level = np.floor(np.log2(np.maximum(footprint / texel_size, 1e-6)) + 1.0)
    return np.clip(level, 0, levels - 1).astype(np.int64)


@dataclass
class Decal:
    """A non-tiled image (a poster) placed on a surface at ``[u0, u0 + width] x [v0, v0 + height]`` (m)."""

    u0: float
    v0: float
    width: float
    height: float
    image: np.ndarray  # h x w x 3 float32 in [0, 1]
    pyramid: list[np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.pyramid = _mip_pyramid(self.image)


@dataclass
class Overlay:
    """A non-repeating layer over one whole surface, so that no view sees two copies of a pattern.

    ``image`` is ``h x w x 4`` float32: premultiplied paint colour (channels 0-2)
    and the factor applied to the material below (channel 3); the albedo
    becomes ``material * image[..., 3] + image[..., :3]``. Texel ``(0, 0)``
    starts at the surface coordinates ``origin`` (m); texels are ``texel_size`` m.
    """

    image: np.ndarray
    origin: tuple[float, float]
    texel_size: float = _OVERLAY_TEXEL
    pyramid: list[np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.pyramid = _mip_pyramid(self.image)


@dataclass
class Material:
    """A tiled texture with a mip-map; ``texel_size`` is metres per texel at level 0."""

    texture: np.ndarray  # h x w x 3 float32 in [0, 1]
    texel_size: float
    offset: tuple[float, float] = (0.0, 0.0)
    decals: list[Decal] = field(default_factory=list)
    pyramid: list[np.ndarray] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.pyramid = _mip_pyramid(self.texture)


@functools.lru_cache(maxsize=None)
def _bundled_image(name: str) -> np.ndarray:
    """An image shipped with scikit-image, as float32 in [0, 1], at most 384 pixels a side."""
    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    image = image.astype(np.float32) / 255.0
    scale = 384.0 / max(image.shape[:2])
    if scale < 1.0:
        size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """``size x size`` periodic (seamlessly tiling) value noise in [0, 1] with ``cells`` features a side."""
    grid = np.tile(rng.random((cells, cells)).astype(np.float32), (3, 3))
    big = cv2.resize(grid, (3 * size, 3 * size), interpolation=cv2.INTER_CUBIC)
    return big[size:2 * size, size:2 * size].clip(0.0, 1.0)


def _fractal_noise(rng: np.random.Generator, size: int, octaves: int = 6, base_cells: int = 4,
                   persistence: float = 0.7) -> np.ndarray:
    """Multi-octave periodic value noise normalised to [0, 1]."""
    total = np.zeros((size, size), np.float32)
    weight = 1.0
    for octave in range(octaves):
        cells = base_cells * 2**octave
        if cells > size // 2:
            break
        total += weight * _smooth_noise(rng, size, cells)
        weight *= persistence
    total -= total.min()
    return total / max(float(total.max()), 1e-6)


def _random_colour(rng: np.random.Generator, low: float = 0.25, high: float = 0.9) -> np.ndarray:
    return rng.uniform(low, high, 3).astype(np.float32)


def _mix(colour_a: np.ndarray, colour_b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    weight = weight[..., None]
    return (colour_a * (1.0 - weight) + colour_b * weight).astype(np.float32)


def _speckles(rng: np.random.Generator, texture: np.ndarray, count: int, max_radius: int) -> np.ndarray:
    """Scatter ``count`` random ellipses of random colours over a tiling ``texture`` (drawn wrapped)."""
    size = texture.shape[0]
    texture = texture.copy()
    for _ in range(count):
        centre = rng.integers(0, size, 2)
        axes = (int(rng.integers(2, max_radius)), int(rng.integers(2, max_radius)))
        angle = float(rng.uniform(0, 180))
        colour = tuple(float(value) for value in _random_colour(rng, 0.05, 1.0))
        for dy in (-size, 0, size):
            for dx in (-size, 0, size):
                cv2.ellipse(texture, (int(centre[0] + dx), int(centre[1] + dy)), axes, angle, 0, 360, colour, -1,
                            cv2.LINE_AA)
    return texture


def _noise_texture(rng: np.random.Generator) -> np.ndarray:
    """Mottled colour noise with scattered speckles (stone, terrazzo, patterned fabric)."""
    noise = _fractal_noise(rng, _TEXTURE_SIZE, base_cells=int(rng.integers(3, 8)))
    texture = _mix(_random_colour(rng, 0.1, 0.5), _random_colour(rng, 0.5, 1.0), noise)
    return _speckles(rng, texture, int(rng.integers(150, 400)), 9)


def _stripes_texture(rng: np.random.Generator) -> np.ndarray:
    """Wallpaper: stripes of random widths and colours over a fine printed pattern."""
    size = _TEXTURE_SIZE
    widths = rng.integers(6, 40, size=64)
    edges = np.cumsum(widths)
    stripe = np.searchsorted(edges, np.arange(size) % edges[-1], side="right")
    palette = np.stack([_random_colour(rng) for _ in range(4)])
    base = palette[stripe % len(palette)][None, :, :].repeat(size, 0)
    pattern = _fractal_noise(rng, size, octaves=4, base_cells=16)
    texture = (base * (0.7 + 0.5 * pattern[..., None])).clip(0.0, 1.0).astype(np.float32)
    return _speckles(rng, texture, int(rng.integers(100, 250)), 6)


def _wood_texture(rng: np.random.Generator) -> np.ndarray:
    """Planks with grain along ``u``, gaps between planks and per-plank tone."""
    size = _TEXTURE_SIZE
    num_planks = int(rng.integers(5, 10))
    ys, xs = np.mgrid[0:size, 0:size]
    plank = (ys * num_planks) // size
    warp = _fractal_noise(rng, size, octaves=4, base_cells=6) * 30.0
    grain = 0.5 + 0.5 * np.sin((ys + warp + plank * 37.0) * (2 * np.pi / rng.uniform(10.0, 18.0)))
    light, dark = rng.uniform([0.55, 0.35, 0.15], [0.85, 0.6, 0.35]), rng.uniform([0.25, 0.12, 0.05], [0.45, 0.3, 0.15])
    texture = _mix(dark.astype(np.float32), light.astype(np.float32), 0.35 + 0.45 * grain)
    tone = rng.uniform(0.8, 1.15, plank.max() + 1).astype(np.float32)[plank]
    texture *= tone[..., None]
    texture[(ys * num_planks) % size < 2 * num_planks] *= 0.35
    offsets = rng.integers(0, size, plank.max() + 1)[plank]
    texture[((xs + offsets) % (size // 2)) < 2] *= 0.45
    return texture.clip(0.0, 1.0)


def _tiles_texture(rng: np.random.Generator) -> np.ndarray:
    """Square tiles with grout lines and per-tile tone over fine noise."""
    size = _TEXTURE_SIZE
    tile = int(rng.choice([32, 64]))
    ys, xs = np.mgrid[0:size, 0:size]
    index = (ys // tile) * (size // tile) + xs // tile
    tone = rng.uniform(0.75, 1.1, (size // tile) ** 2).astype(np.float32)[index]
    colour = _random_colour(rng, 0.4, 0.95)
    texture = colour * (tone * (0.8 + 0.35 * _fractal_noise(rng, size, octaves=4, base_cells=12)))[..., None]
    grout = ((ys % tile) < 3) | ((xs % tile) < 3)
    texture[grout] = _random_colour(rng, 0.1, 0.4)
    return texture.clip(0.0, 1.0).astype(np.float32)


def _gray_texture(rng: np.random.Generator) -> np.ndarray:
    """A bundled grey texture (brick, gravel, grass) tinted with a random colour, mirrored
    into a seamless tile."""
    half = _TEXTURE_SIZE // 2
    gray = cv2.resize(_bundled_image(str(rng.choice(_GRAY_TEXTURES))), (half, half), interpolation=cv2.INTER_AREA)
    gray = np.concatenate([gray, gray[:, ::-1]], 1)
    gray = np.concatenate([gray, gray[::-1]], 0)
    return (_random_colour(rng, 0.5, 1.0) * (0.3 + 0.8 * gray[..., None])).clip(0.0, 1.0).astype(np.float32)


def _plain_paint(rng: np.random.Generator) -> Material:
    """Low-texture paint: one colour with a faint (+-2 %) variation over metres."""
    colour = _random_colour(rng, 0.45, 0.9)
    variation = 1.0 + 0.04 * (_smooth_noise(rng, 32, 3) - 0.5)
    return Material(colour * variation[..., None], texel_size=0.1)


_TEXTURE_MAKERS: dict[str, Callable[[np.random.Generator], np.ndarray]] = {
    "noise": _noise_texture,
    "stripes": _stripes_texture,
    "wood": _wood_texture,
    "tiles": _tiles_texture,
    "gray": _gray_texture,
}


def _textured_material(rng: np.random.Generator, choices: Iterable[str]) -> Material:
    name = str(rng.choice(list(choices)))
    texel_size = float(rng.uniform(0.0025, 0.004))
    offset = (float(rng.uniform(0, 5)), float(rng.uniform(0, 5)))
    return Material(_TEXTURE_MAKERS[name](rng), texel_size=texel_size, offset=offset)


def _noise_field(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """``height x width`` (non-periodic) value noise in [0, 1] with features about ``cell`` texels apart."""
    rows, columns = -(-height // cell) + 1, -(-width // cell) + 1
    grid = rng.random((rows, columns)).astype(np.float32)
    return cv2.resize(grid, (columns * cell, rows * cell), interpolation=cv2.INTER_CUBIC)[:height, :width]


def _make_overlay(rng: np.random.Generator, u_range: tuple[float, float], v_range: tuple[float, float]) -> Overlay:
    """Mottled shading, stains and speckles scattered over a whole surface without repetition.

    The tiled materials repeat every 1.3-2 m, so a view can hold two copies of
    a pattern that SIFT matches to each other; the overlay makes every patch
    of a surface unique at the scales SIFT describes (2 cm to half a metre).
    """
    margin = 0.05
    origin = (u_range[0] - margin, v_range[0] - margin)
    width = int(np.ceil((u_range[1] - u_range[0] + 2 * margin) / _OVERLAY_TEXEL))
    height = int(np.ceil((v_range[1] - v_range[0] + 2 * margin) / _OVERLAY_TEXEL))
    noise = np.zeros((height, width), np.float32)
    for octave, feature in enumerate((0.64, 0.32, 0.16, 0.08, 0.04, 0.02)):
        noise += 0.8**octave * _noise_field(rng, height, width, max(2, round(feature / _OVERLAY_TEXEL)))
    noise = (noise - noise.min()) / max(float(noise.max() - noise.min()), 1e-6)
    shade = 1.1 - float(rng.uniform(0.4, 0.6)) * noise

    canvas = np.zeros((height, width, 4), np.uint8)  # premultiplied colour and coverage, 0..255
    area = width * height * _OVERLAY_TEXEL**2
    shift = 4  # sub-texel precision of cv2's drawing
    for density, radius, opacity in (((2.0, 5.0), (0.03, 0.12), (0.25, 0.5)),
                                     ((60.0, 120.0), (0.006, 0.03), (0.6, 1.0))):
        count = int(rng.poisson(area * rng.uniform(*density)))
        centres = rng.uniform(0, [width, height], (count, 2)) * 2**shift
        axes = rng.uniform(*radius, (count, 2)) / _OVERLAY_TEXEL * 2**shift
        angles = rng.uniform(0, 180, count)
        alphas = rng.uniform(*opacity, count)
        colours = rng.uniform(0.05, 1.0, (count, 3)) * alphas[:, None]
        for centre, axis, angle, colour, alpha in zip(centres.astype(int), axes.astype(int), angles, colours, alphas):
            cv2.ellipse(canvas, tuple(centre.tolist()), tuple(axis.tolist()), float(angle), 0, 360,
                        (*(255.0 * colour).tolist(), 255.0 * alpha), -1, cv2.LINE_AA, shift)
    paint = canvas.astype(np.float32) / 255.0
    image = np.concatenate([paint[..., :3] * shade[..., None], (shade * (1.0 - paint[..., 3]))[..., None]], -1)
    return Overlay(image=image, origin=origin)


# ---------------------------------------------------------------------------
# Scenes
# ---------------------------------------------------------------------------


@dataclass
class Box:
    """An axis-aligned piece of furniture ``[lo, hi]`` (world coordinates, metres)."""

    lo: np.ndarray
    hi: np.ndarray
    material: Material


@dataclass
class Room:
    """A box room with furniture, materials and a point light.

    ``size`` is ``(Lx, Ly, Lz)``: width, height (floor at ``y = Ly``) and depth.
    ``walls`` holds the six room surfaces in the order ``x = 0, x = Lx, y = 0
    (ceiling), y = Ly (floor), z = 0, z = Lz``.
    """

    kind: str
    seed: int
    size: np.ndarray
    walls: list[Material]
    boxes: list[Box]
    light: np.ndarray
    ambient: float
    diffuse: float
    tint: np.ndarray
    overlays: dict[int, Overlay] = field(default_factory=dict)

    def surface(self, surface_id: int) -> tuple[Material, int, float, np.ndarray, np.ndarray]:
        """What :func:`render` needs of a surface: its material, the axis of its normal, the normal's
        sign (towards the viewer) and the bounds ``(lo, hi)`` of its box (the room itself for ids 0-5).

        Ids ``0..5`` are the walls in the order of :attr:`walls`; ``6 + 6 b + 2 axis + side``
        is the face of box ``b`` normal to ``axis`` on its low (``side = 0``) or high side.
        """
        axis, side = divmod(surface_id % 6, 2)
        if surface_id < 6:
            return self.walls[surface_id], axis, -1.0 if side else 1.0, np.zeros(3), self.size
        box = self.boxes[(surface_id - 6) // 6]
        return box.material, axis, 1.0 if side else -1.0, box.lo, box.hi

    def safe_region(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounds ``(lo, hi)`` of camera centres: away from walls and furniture,
        1.1 to 1.6 m above the floor."""
        margin = _WALL_BAND + _CLEARANCE
        lo = np.array([margin, self.size[1] - 1.6, margin])
        hi = np.array([self.size[0] - margin, self.size[1] - 1.1, self.size[2] - margin])
        return lo, hi


def make_room(seed: int, kind: str) -> Room:
    """Build a random room of ``kind`` (``"textured"`` or ``"low_texture"``), deterministically from ``seed``."""
    if kind not in (TEXTURED, LOW_TEXTURE):
        raise GasMonoError(f"unknown scene kind {kind!r} (expected {TEXTURED!r} or {LOW_TEXTURE!r})")
    rng = np.random.default_rng(seed)
    size = np.array([rng.uniform(3.0, 6.0), rng.uniform(2.5, 3.0), rng.uniform(3.0, 6.0)])
    if kind == TEXTURED:
        walls = [_textured_material(rng, ("noise", "stripes", "gray", "stripes")) for _ in range(2)]
        walls += [_textured_material(rng, ("tiles", "noise")), _textured_material(rng, ("wood", "tiles", "gray"))]
        walls += [_textured_material(rng, ("noise", "stripes", "gray", "stripes")) for _ in range(2)]
        for wall_index in (0, 1, 4, 5):
            if rng.random() < 0.7:
                walls[wall_index].decals.append(_poster(rng, size, wall_index))
    else:
        walls = [_plain_paint(rng) for _ in range(6)]
    boxes = []
    for _ in range(int(rng.integers(2, 5))):
        material = _textured_material(rng, ("wood", "noise", "gray")) if kind == TEXTURED else _plain_paint(rng)
        boxes.append(_furniture(rng, size, material))
    light = np.array([rng.uniform(0.3, 0.7) * size[0], 0.2, rng.uniform(0.3, 0.7) * size[2]])
    room = Room(
        kind=kind,
        seed=seed,
        size=size,
        walls=walls,
        boxes=boxes,
        light=light,
        ambient=float(rng.uniform(0.45, 0.6)),
        diffuse=float(rng.uniform(0.5, 0.7)),
        tint=rng.uniform(0.92, 1.05, 3).astype(np.float32),
    )
    if kind == TEXTURED:
        for surface_id in range(6 + 6 * len(boxes)):
            _, axis, normal_sign, lo, hi = room.surface(surface_id)
            corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1).T
            u, v = _surface_uv(corners, axis, normal_sign)
            room.overlays[surface_id] = _make_overlay(rng, (u.min(), u.max()), (v.min(), v.max()))
    return room


def _wall_u_range(size: np.ndarray, wall_index: int) -> tuple[float, float]:
    """Range of the horizontal texture coordinate ``u`` on a vertical wall (see :func:`_surface_uv`)."""
    if wall_index == 0:
        return 0.0, float(size[2])
    if wall_index == 1:
        return -float(size[2]), 0.0
    if wall_index == 4:
        return -float(size[0]), 0.0
    return 0.0, float(size[0])


def _poster(rng: np.random.Generator, size: np.ndarray, wall_index: int) -> Decal:
    image = _bundled_image(str(rng.choice(_POSTER_IMAGES)))
    width = float(rng.uniform(0.6, 1.2))
    height = width * image.shape[0] / image.shape[1]
    u_low, u_high = _wall_u_range(size, wall_index)
    u0 = float(rng.uniform(u_low + 0.2, max(u_high - width - 0.2, u_low + 0.21)))
    v0 = float(rng.uniform(0.4, max(size[1] - 1.2 - height, 0.41)))
    return Decal(u0=u0, v0=v0, width=width, height=height, image=image)


def _furniture(rng: np.random.Generator, size: np.ndarray, material: Material) -> Box:
    """A box standing on the floor inside the band along one wall."""
    depth = rng.uniform(0.3, _WALL_BAND)
    height = rng.uniform(0.4, 1.0)
    along_axis = int(rng.choice([0, 2]))
    across_axis = 2 - along_axis
    length = rng.uniform(0.5, min(1.6, size[along_axis] - 0.2))
    start = rng.uniform(0.1, size[along_axis] - length - 0.1)
    lo, hi = np.zeros(3), np.zeros(3)
    lo[along_axis], hi[along_axis] = start, start + length
    if rng.random() < 0.5:
        lo[across_axis], hi[across_axis] = 0.0, depth
    else:
        lo[across_axis], hi[across_axis] = size[across_axis] - depth, size[across_axis]
    lo[1], hi[1] = size[1] - height, size[1]
    return Box(lo=lo, hi=hi, material=material)


# ---------------------------------------------------------------------------
# Camera trajectories
# ---------------------------------------------------------------------------


def rotation_from_euler(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation: yaw about the vertical ``y`` axis, then pitch
    about the camera ``x`` axis (positive looks up), then roll about the optical axis."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return r_yaw @ r_pitch @ r_roll


def world_to_camera(rotation: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """4 x 4 world-to-camera extrinsics from a camera-to-world rotation and the camera centre."""
    extrinsics = np.eye(4)
    extrinsics[:3, :3] = rotation.T
    extrinsics[:3, 3] = -rotation.T @ centre
    return extrinsics


def _smooth_jitter(rng: np.random.Generator, num_frames: int, std: float) -> np.ndarray:
    noise = rng.normal(0.0, 1.0, num_frames + 8)
    kernel = np.hanning(9)
    smooth = np.convolve(noise, kernel / np.sqrt((kernel**2).sum()), mode="valid")[:num_frames]
    return std * smooth


def _equal_steps(path: np.ndarray, step: float, count: int) -> np.ndarray | None:
    """``count x 3`` points of a densely sampled ``path`` (``N x 3``), each the first one at least ``step``
    from the previous; ``None`` when the path ends first."""
    chosen = [0]
    for _ in range(count - 1):
        start = chosen[-1]
        ahead = np.nonzero(np.linalg.norm(path[start + 1:] - path[start], axis=1) >= step)[0]
        if ahead.size == 0:
            return None
        chosen.append(start + 1 + int(ahead[0]))
    return path[chosen]


def make_trajectory(room: Room, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth handheld-like trajectory: ``num_frames x 4 x 4`` world-to-camera matrices.

    The centre follows a curve made of slow sinusoids inside :meth:`Room.safe_region`,
    walked in steps of 3.8-5.2 cm per frame (equal chords along the curve, so the
    camera never stalls where the curve slows down or turns: short baselines make the
    translation direction of SfM poses unreliable, and COLMAP needs about 8
    degrees of triangulation angle between frames ten apart to start a model
    of a room 3 m away). The view pans (yaw) at 1.5-3.5 degrees per frame with
    swaying pitch and roll and a little jitter, so consecutive frames differ by
    a few degrees of rotation and a few centimetres of translation.
    """
    lo, hi = room.safe_region()
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    amplitudes = rng.uniform(0.6, 0.9, (3, 2)) * np.array([0.6, 0.4]) * half[:, None]
    omegas = rng.uniform(0.5, 1.5, (3, 2))
    phases = rng.uniform(0, 2 * np.pi, (3, 2))

    def position(t: np.ndarray) -> np.ndarray:
        return centre[None] + (amplitudes[None] * np.sin(omegas[None] * t[:, None, None] + phases[None])).sum(-1)

    step = float(rng.uniform(*_STEP_RANGE))
    one_period = position(np.linspace(0.0, 2 * np.pi, 2001))
    mean_speed = np.linalg.norm(np.diff(one_period, axis=0), axis=1).sum() / (2 * np.pi)
    duration = 2.0 * num_frames * step / max(mean_speed, 1e-6)
    while True:
        centres = _equal_steps(position(np.linspace(0.0, duration, 64 * num_frames + 1)), step, num_frames)
        if centres is not None:
            break
        duration *= 2

    frames = np.arange(num_frames)
    yaw_rate = np.deg2rad(rng.uniform(1.5, 3.5)) * rng.choice([-1.0, 1.0])
    yaw = rng.uniform(0, 2 * np.pi) + yaw_rate * frames
    yaw += np.deg2rad(15) * np.sin(0.08 * frames + rng.uniform(0, 2 * np.pi))
    pitch = np.deg2rad(rng.uniform(-12, 0)) + np.deg2rad(8) * np.sin(0.11 * frames + rng.uniform(0, 2 * np.pi))
    roll = np.deg2rad(3) * np.sin(0.07 * frames + rng.uniform(0, 2 * np.pi))
    yaw += _smooth_jitter(rng, num_frames, np.deg2rad(0.3))
    pitch += _smooth_jitter(rng, num_frames, np.deg2rad(0.3))
    centres += np.stack([_smooth_jitter(rng, num_frames, 0.002) for _ in range(3)], 1)
    centres = np.clip(centres, lo, hi)
    return np.stack([world_to_camera(rotation_from_euler(*angles), c) for *angles, c in zip(yaw, pitch, roll, centres)])


def random_view(room: Room, rng: np.random.Generator) -> np.ndarray:
    """One random 4 x 4 world-to-camera pose for a test image.

    The camera stands near one end of the room's longer horizontal axis and
    looks across the room (yaw within 30 degrees of the far wall's direction),
    tilted 5-25 degrees down, so that test views span the room's depth range
    (floor, far wall, furniture) as NYUv2's test images do.
    """
    lo, hi = room.safe_region()
    centre = rng.uniform(lo, hi)
    axis = 0 if room.size[0] >= room.size[2] else 2
    near_low_end = bool(rng.integers(2))
    fraction = rng.uniform(0.0, 0.2) if near_low_end else rng.uniform(0.8, 1.0)
    centre[axis] = lo[axis] + (hi[axis] - lo[axis]) * fraction
    target = (lo + hi) / 2
    target[axis] = room.size[axis] if near_low_end else 0.0
    yaw = np.arctan2(target[0] - centre[0], target[2] - centre[2]) + np.deg2rad(rng.uniform(-30, 30))
    pitch, roll = np.deg2rad(rng.uniform(-25, -5)), np.deg2rad(rng.uniform(-3, 3))
    return world_to_camera(rotation_from_euler(yaw, pitch, roll), centre)


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def _surface_uv(points: np.ndarray, axis: int, normal_sign: float) -> tuple[np.ndarray, np.ndarray]:
    """Texture coordinates (metres) of ``points`` (``N x 3``) on a plane normal
    to ``axis`` whose normal points along ``normal_sign * e_axis`` (towards the viewer).

    On vertical surfaces ``v`` runs down and ``u`` to the viewer's right, so
    posters read correctly from the front.
    """
    if axis == 1:
        return points[:, 0], points[:, 2]
    view = -normal_sign
    if axis == 2:
        return view * points[:, 0], points[:, 1]
    return -view * points[:, 2], points[:, 1]


def _sample_bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray, wrap: bool) -> np.ndarray:
    """Bilinear lookup at texel coordinates (texel centres at integers); wraps or clamps at the borders."""
    height, width = image.shape[:2]
    x0, y0 = np.floor(x), np.floor(y)
    wx, wy = (x - x0).astype(np.float32)[:, None], (y - y0).astype(np.float32)[:, None]
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    if wrap:
        x0, y0 = x0 % width, y0 % height
        x1, y1 = (x0 + 1) % width, (y0 + 1) % height
    else:
        x1, y1 = np.clip(x0 + 1, 0, width - 1), np.clip(y0 + 1, 0, height - 1)
        x0, y0 = np.clip(x0, 0, width - 1), np.clip(y0, 0, height - 1)
    texels = image.reshape(height * width, -1)  # gathers from a flat array are several times faster
    row0, row1 = y0 * width, y1 * width
    top = texels.take(row0 + x0, 0) * (1 - wx) + texels.take(row0 + x1, 0) * wx
    bottom = texels.take(row1 + x0, 0) * (1 - wx) + texels.take(row1 + x1, 0) * wx
    return top * (1 - wy) + bottom * wy


def _sample_pyramid(pyramid: list[np.ndarray], texel_size: float, origin: tuple[float, float], u: np.ndarray,
                    v: np.ndarray, footprint: np.ndarray, wrap: bool) -> np.ndarray:
    """Values ``N x C`` of a mip-mapped image whose level-0 texels are ``texel_size`` m, starting at
    ``origin``, at surface coordinates ``(u, v)``; ``footprint`` (a pixel's size on the surface, m)
    picks the level, trading a little blur for no aliasing."""
    level = _mip_level(footprint, texel_size, len(pyramid))
    height, width = pyramid[0].shape[:2]
    values = np.empty((u.shape[0], pyramid[0].shape[2]), np.float32)
    for index in np.unique(level):
        mask = level == index
        image = pyramid[index]
        x = (u[mask] - origin[0]) * (image.shape[1] / (width * texel_size)) - 0.5
        y = (v[mask] - origin[1]) * (image.shape[0] / (height * texel_size)) - 0.5
        values[mask] = _sample_bilinear(image, x, y, wrap)
    return values


def _shade_material(material: Material, u: np.ndarray, v: np.ndarray, footprint: np.ndarray,
                    overlay: Overlay | None = None) -> np.ndarray:
    """Albedo ``N x 3`` of ``material`` (under ``overlay``, if any) at ``(u, v)``; ``footprint`` is a
    pixel's size on the surface (m)."""
    albedo = _sample_pyramid(material.pyramid, material.texel_size, material.offset, u, v, footprint, wrap=True)
    if overlay is not None:
        layer = _sample_pyramid(overlay.pyramid, overlay.texel_size, overlay.origin, u, v, footprint, wrap=False)
        albedo = albedo * layer[:, 3:] + layer[:, :3]
    for decal in material.decals:
        inside = np.nonzero((u >= decal.u0) & (u < decal.u0 + decal.width) & (v >= decal.v0)
                            & (v < decal.v0 + decal.height))[0]
        if inside.size:
            albedo[inside] = _sample_pyramid(decal.pyramid, decal.width / decal.image.shape[1], (decal.u0, decal.v0),
                                             u[inside], v[inside], footprint[inside], wrap=False)
    return albedo


@functools.lru_cache(maxsize=4)
def _camera_rays(intrinsics: tuple[float, ...], height: int, width: int) -> np.ndarray:
    """``3 x HW`` float32 rays ``K^-1 [u, v, 1]^T`` of every pixel (row-major); their z component is 1."""
    ys, xs = np.mgrid[0:height, 0:width]
    pixels = np.stack([xs.ravel(), ys.ravel(), np.ones(height * width)], 0)
    rays = np.linalg.inv(np.asarray(intrinsics).reshape(3, 3)) @ pixels
    rays = rays.astype(np.float32)
    rays.setflags(write=False)
    return rays


def render(
    room: Room, extrinsics: np.ndarray, intrinsics: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast one view.

    Args:
        room: the scene.
        extrinsics: 4 x 4 world-to-camera matrix.
        intrinsics: 3 x 3 pixel intrinsics.
        height, width: image size.

    Returns:
        ``(rgb, depth)``: ``H x W x 3`` uint8 image and ``H x W`` float32 z-depth in metres.
    """
    rotation = extrinsics[:3, :3].T  # camera-to-world
    centre = (-rotation @ extrinsics[:3, 3]).astype(np.float32)[:, None]
    # Rays in world coordinates, 3 x N; the ray parameter t of a hit is its z-depth.
    rays = rotation.astype(np.float32) @ _camera_rays(tuple(np.asarray(intrinsics, float).ravel()), height, width)
    rays[rays == 0] = 1e-12
    inverse = 1.0 / rays
    columns = np.arange(rays.shape[1])

    # The room, seen from inside: the first bound reached along each axis.
    bounds = np.where(rays > 0, room.size.astype(np.float32)[:, None], np.float32(0.0))
    t_axes = (bounds - centre) * inverse
    axis = np.argmin(t_axes, 0)
    t_hit = t_axes[axis, columns]
    surface = 2 * axis + (rays[axis, columns] > 0)

    # Furniture, seen from outside (slab test).
    for box_index, box in enumerate(room.boxes):
        t_low = (box.lo.astype(np.float32)[:, None] - centre) * inverse
        t_high = (box.hi.astype(np.float32)[:, None] - centre) * inverse
        t_near_axes = np.minimum(t_low, t_high)
        t_near = t_near_axes.max(0)
        t_far = np.maximum(t_low, t_high).min(0)
        hit = np.nonzero((t_near <= t_far) & (t_near > 0) & (t_near < t_hit))[0]
        if hit.size:
            entry_axis = np.argmax(t_near_axes[:, hit], 0)
            entry_side = rays[entry_axis, hit] < 0  # entering through the high face
            t_hit[hit] = t_near[hit]
            surface[hit] = 6 + 6 * box_index + 2 * entry_axis + entry_side

    points = centre + t_hit[None] * rays
    ray_length = np.sqrt((rays**2).sum(0))
    focal = float(intrinsics[0, 0])
    colour = np.empty((rays.shape[1], 3), np.float32)
    normals = np.zeros((3, rays.shape[1]), np.float32)
    order = np.argsort(surface, kind="stable")
    surface_ids, starts = np.unique(surface[order], return_index=True)
    for surface_id, index in zip(surface_ids, np.split(order, starts[1:])):
        material, axis_id, normal_sign, _, _ = room.surface(int(surface_id))
        normals[axis_id, index] = normal_sign
        cosine = np.abs(rays[axis_id, index]) / ray_length[index]
        footprint = t_hit[index] * ray_length[index] / focal / np.sqrt(np.maximum(cosine, 0.05))
        u, v = _surface_uv(points[:, index].T, axis_id, normal_sign)
        colour[index] = _shade_material(material, u, v, footprint, room.overlays.get(int(surface_id)))

    to_light = room.light.astype(np.float32)[:, None] - points
    distance = np.sqrt((to_light**2).sum(0))
    lambert = np.clip((normals * to_light).sum(0) / distance, 0.0, 1.0)
    shading = room.ambient + room.diffuse * lambert / (1.0 + (distance / 4.0) ** 2)
    colour *= shading[:, None] * room.tint[None]
    rgb = (np.clip(colour, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).reshape(height, width, 3)
    return rgb, t_hit.reshape(height, width)


# ---------------------------------------------------------------------------
# Data set writer
# ---------------------------------------------------------------------------


@dataclass
class SceneSpec:
    """What to render for one scene: a training sequence or a set of test views."""

    name: str
    split: str  # "train" or "test"
    kind: str
    seed: int
    frames: int
    test_indices: list[int] = field(default_factory=list)


def _derived_seed(seed: int, stream: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, stream, index]).generate_state(1)[0])


def plan_scenes(num_scenes: int, num_test: int, num_low_texture: int, seed: int, frames_per_scene: int,
                test_views_per_scene: int = 5) -> list[SceneSpec]:
    """Deterministic plan of training and (held-out) test scenes.

    ``num_low_texture`` of the training scenes (chosen by ``seed``) use plain
    paint everywhere; test scenes are separate rooms, every fourth one low-texture.
    """
    if num_scenes < 0 or num_test < 0 or frames_per_scene < 3:
        raise GasMonoError("need num_scenes >= 0, num_test >= 0 and frames_per_scene >= 3")
    if not 0 <= num_low_texture <= num_scenes:
        raise GasMonoError(f"num_low_texture must be in 0..{num_scenes}, got {num_low_texture}")
    rng = np.random.default_rng(seed)
    low_texture = set(rng.choice(num_scenes, num_low_texture, replace=False).tolist()) if num_scenes else set()
    specs = [
        SceneSpec(f"scene_{index:04d}", "train", LOW_TEXTURE if index in low_texture else TEXTURED,
                  _derived_seed(seed, 0, index), frames_per_scene)
        for index in range(num_scenes)
    ]
    test_ids = list(range(1, num_test + 1))
    for index, start in enumerate(range(0, num_test, test_views_per_scene)):
        chunk = test_ids[start:start + test_views_per_scene]
        kind = LOW_TEXTURE if index % 4 == 3 else TEXTURED
        specs.append(SceneSpec(f"test_{index:04d}", "test", kind, _derived_seed(seed, 1, index), len(chunk), chunk))
    return specs


def render_scene(spec: SceneSpec, out_dir: Path, height: int, width: int) -> dict[str, np.ndarray]:
    """Render and write one scene.

    Returns:
        ``{"room_size": (Lx, Ly, Lz)}``, plus ``"depths"`` (``N x H x W``) for a test scene.
    """
    room = make_room(spec.seed, spec.kind)
    rng = np.random.default_rng([spec.seed, 7])
    intrinsics = nyu_pixel_intrinsics(height, width)
    if spec.split == "train":
        scene_dir = out_dir / "train" / spec.name
        (scene_dir / "depth").mkdir(parents=True, exist_ok=True)
        poses = make_trajectory(room, spec.frames, rng)
        for frame, extrinsics in enumerate(poses):
            rgb, depth = render(room, extrinsics, intrinsics, height, width)
            Image.fromarray(rgb).save(scene_dir / f"{frame:06d}.jpg", quality=_JPEG_QUALITY)
            depth_mm = np.clip(np.round(depth * 1000.0), 0, 65535).astype(np.uint16)
            cv2.imwrite(str(scene_dir / "depth" / f"{frame:06d}.png"), depth_mm)
        np.savetxt(scene_dir / "cam.txt", intrinsics, fmt="%.6f")
        np.savetxt(scene_dir / "poses.txt", poses.reshape(len(poses), 16), fmt="%.9g")
        return {"room_size": room.size}
    color_dir = out_dir / "test" / "color"
    color_dir.mkdir(parents=True, exist_ok=True)
    depths = []
    for index in spec.test_indices:
        rgb, depth = render(room, random_view(room, rng), intrinsics, height, width)
        Image.fromarray(rgb).save(color_dir / f"{index:04d}.png")
        depths.append(depth)
    return {"room_size": room.size, "depths": np.stack(depths)}


def _render_task(args: tuple[SceneSpec, Path, int, int]) -> tuple[SceneSpec, dict[str, np.ndarray]]:
    spec, out_dir, height, width = args
    return spec, render_scene(spec, out_dir, height, width)


def generate_dataset(
    out_dir: str | Path,
    num_scenes: int = 8,
    frames_per_scene: int = 40,
    num_test: int = 20,
    height: int = 480,
    width: int = 640,
    num_low_texture: int = 2,
    seed: int = 0,
    num_workers: int = 1,
    progress: bool = True,
) -> dict:
    """Render a synthetic indoor data set into ``out_dir`` (layout in the module docstring).

    Scenes are independent and deterministic from ``seed``, so ``num_workers``
    processes render them in parallel with identical results.

    Returns:
        The content written to ``scenes.json``.
    """
    if height < 8 or width < 8:
        raise GasMonoError(f"image size too small: {height} x {width}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = plan_scenes(num_scenes, num_test, num_low_texture, seed, frames_per_scene)
    tasks = [(spec, out_dir, height, width) for spec in specs]
    total_frames = sum(spec.frames for spec in specs)
    test_depths: dict[int, np.ndarray] = {}
    room_sizes: dict[str, list[float]] = {}
    with tqdm(total=total_frames, unit="frame", desc="rendering", disable=not progress) as bar:
        if num_workers > 1:
            with multiprocessing.get_context("fork").Pool(num_workers) as pool:
                results = list(_track(pool.imap_unordered(_render_task, tasks), bar))
        else:
            results = list(_track(map(_render_task, tasks), bar))
    for spec, result in results:
        room_sizes[spec.name] = [round(float(value), 4) for value in result["room_size"]]
        for index, depth in zip(spec.test_indices, result.get("depths", [])):
            test_depths[index] = depth
    if num_test:
        test_dir = out_dir / "test"
        gt = np.stack([test_depths[index] for index in range(1, num_test + 1)]).astype(np.float32)
        np.savez_compressed(test_dir / "gt_depths.npz", data=gt)
        test_list = "".join(f"color {index:04d} l\n" for index in range(1, num_test + 1))
        atomic_write_text(test_list, test_dir / "test_files.txt")
    summary = {
        "seed": seed,
        "height": height,
        "width": width,
        "intrinsics": nyu_pixel_intrinsics(height, width).tolist(),
        "scenes": {
            spec.name: {
                "split": spec.split,
                "kind": spec.kind,
                "room_size": room_sizes[spec.name],
                "seed": spec.seed,
                "frames": spec.frames,
                **({"test_indices": spec.test_indices} if spec.split == "test" else {}),
            }
            for spec in specs
        },
    }
    atomic_write_text(json.dumps(summary, indent=2) + "\n", out_dir / "scenes.json")
    logger.info("rendered %d scenes and %d test images into %s", num_scenes, num_test, out_dir)
    return summary


def _track(results: Iterable[tuple[SceneSpec, dict]], bar: tqdm) -> Iterable[tuple[SceneSpec, dict]]:
    for spec, result in results:
        bar.update(spec.frames)
        yield spec, result
