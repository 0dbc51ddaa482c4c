"""Textures and materials of the synthetic rooms: tiled materials with mip-maps, posters, overlays.

Textured surfaces are a tiled material (period 1.3-2 m) under an overlay that
covers the whole surface without repeating, so that no view holds two copies
of a pattern for SIFT to confuse; low-texture surfaces are plain paint. All
images are float32 in [0, 1]; every random choice comes from the
``np.random.Generator`` passed in.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Iterable

import cv2
import numpy as np
import skimage.data

_GRAY_TEXTURES = ("brick", "gravel", "grass")
_TEXTURE_SIZE = 512
_MIP_LEVELS = 5
_OVERLAY_TEXEL = 0.006  # metres per texel of the non-repeating surface overlays


def _mip_pyramid(image: np.ndarray) -> list[np.ndarray]:
    """Mip levels of an ``h x w x 3`` float32 image, each half the size of the previous."""
    levels = [np.ascontiguousarray(image, dtype=np.float32)]
    while len(levels) < _MIP_LEVELS and min(levels[-1].shape[:2]) >= 8:
        previous = levels[-1]
        size = (previous.shape[1] // 2, previous.shape[0] // 2)
        levels.append(cv2.resize(previous, size, interpolation=cv2.INTER_AREA))
    return levels


def mip_level(footprint: np.ndarray, texel_size: float, levels: int) -> np.ndarray:
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
def bundled_image(name: str) -> np.ndarray:
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
    gray = cv2.resize(bundled_image(str(rng.choice(_GRAY_TEXTURES))), (half, half), interpolation=cv2.INTER_AREA)
    gray = np.concatenate([gray, gray[:, ::-1]], 1)
    gray = np.concatenate([gray, gray[::-1]], 0)
    return (_random_colour(rng, 0.5, 1.0) * (0.3 + 0.8 * gray[..., None])).clip(0.0, 1.0).astype(np.float32)


def plain_paint(rng: np.random.Generator) -> Material:
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


def textured_material(rng: np.random.Generator, choices: Iterable[str]) -> Material:
    name = str(rng.choice(list(choices)))
    texel_size = float(rng.uniform(0.0025, 0.004))
    offset = (float(rng.uniform(0, 5)), float(rng.uniform(0, 5)))
    return Material(_TEXTURE_MAKERS[name](rng), texel_size=texel_size, offset=offset)


def _noise_field(rng: np.random.Generator, height: int, width: int, cell: int) -> np.ndarray:
    """``height x width`` (non-periodic) value noise in [0, 1] with features about ``cell`` texels apart."""
    rows, columns = -(-height // cell) + 1, -(-width // cell) + 1
    grid = rng.random((rows, columns)).astype(np.float32)
    return cv2.resize(grid, (columns * cell, rows * cell), interpolation=cv2.INTER_CUBIC)[:height, :width]


def make_overlay(rng: np.random.Generator, u_range: tuple[float, float], v_range: tuple[float, float]) -> Overlay:
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
