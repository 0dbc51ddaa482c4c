"""Ray casting of a room on the CPU: colour and z-depth of every pixel.

Depth is the ``z`` coordinate in the camera frame (as a Kinect measures it),
and the pixel ``(u, v)`` (integer pixel centres) looks along
``K^-1 [u, v, 1]^T``, the convention of ``layers.BackprojectDepth``. Surfaces
are shaded with their mip-mapped material, overlay and posters, a point light
(Lambert with distance fall-off) and the room's ambient light and tint.
"""
from __future__ import annotations

import functools

import numpy as np

from synthetic.rooms import Room, surface_uv
from synthetic.textures import Material, Overlay, mip_level


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
    level = mip_level(footprint, texel_size, len(pyramid))
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
        u, v = surface_uv(points[:, index].T, axis_id, normal_sign)
        colour[index] = _shade_material(material, u, v, footprint, room.overlays.get(int(surface_id)))

    to_light = room.light.astype(np.float32)[:, None] - points
    distance = np.sqrt((to_light**2).sum(0))
    lambert = np.clip((normals * to_light).sum(0) / distance, 0.0, 1.0)
    shading = room.ambient + room.diffuse * lambert / (1.0 + (distance / 4.0) ** 2)
    colour *= shading[:, None] * room.tint[None]
    rgb = (np.clip(colour, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).reshape(height, width, 3)
    return rgb, t_hit.reshape(height, width)
