"""Box rooms with furniture, materials and a point light.

World frame: ``x`` right, ``y`` down, ``z`` forward (the camera convention of
OpenCV); a room is the box ``[0, Lx] x [0, Ly] x [0, Lz]`` with the ceiling at
``y = 0`` and the floor at ``y = Ly``. Furniture boxes stand on the floor along
the walls; the camera moves in a safe region away from walls and furniture.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from synthetic.textures import Decal, Material, Overlay, bundled_image, make_overlay, plain_paint, textured_material
from utils import GasMonoError

TEXTURED = "textured"
LOW_TEXTURE = "low_texture"

_POSTER_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "cat")
_WALL_BAND = 0.7  # furniture stands within this distance of a wall (m)
_CLEARANCE = 0.55  # minimum horizontal distance from the camera to furniture (m)


def surface_uv(points: np.ndarray, axis: int, normal_sign: float) -> tuple[np.ndarray, np.ndarray]:
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
        """What :func:`synthetic.renderer.render` needs of a surface: its material, the axis of its
        normal, the normal's sign (towards the viewer) and the bounds ``(lo, hi)`` of its box (the
        room itself for ids 0-5).

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
        walls = [textured_material(rng, ("noise", "stripes", "gray", "stripes")) for _ in range(2)]
        walls += [textured_material(rng, ("tiles", "noise")), textured_material(rng, ("wood", "tiles", "gray"))]
        walls += [textured_material(rng, ("noise", "stripes", "gray", "stripes")) for _ in range(2)]
        for wall_index in (0, 1, 4, 5):
            if rng.random() < 0.7:
                walls[wall_index].decals.append(_poster(rng, size, wall_index))
    else:
        walls = [plain_paint(rng) for _ in range(6)]
    boxes = []
    for _ in range(int(rng.integers(2, 5))):
        material = textured_material(rng, ("wood", "noise", "gray")) if kind == TEXTURED else plain_paint(rng)
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
            u, v = surface_uv(corners, axis, normal_sign)
            room.overlays[surface_id] = make_overlay(rng, (u.min(), u.max()), (v.min(), v.max()))
    return room


def _wall_u_range(size: np.ndarray, wall_index: int) -> tuple[float, float]:
    """Range of the horizontal texture coordinate ``u`` on a vertical wall (see :func:`surface_uv`)."""
    if wall_index == 0:
        return 0.0, float(size[2])
    if wall_index == 1:
        return -float(size[2]), 0.0
    if wall_index == 4:
        return -float(size[0]), 0.0
    return 0.0, float(size[0])


def _poster(rng: np.random.Generator, size: np.ndarray, wall_index: int) -> Decal:
    image = bundled_image(str(rng.choice(_POSTER_IMAGES)))
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
