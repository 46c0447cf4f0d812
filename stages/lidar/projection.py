"""LiDAR points on the camera's image grid (xMOD / DIOD-3D, SPEC-xMOD.md section 1).

DIOD-3D sees a LiDAR sweep as a 4-channel image on the same grid as the RGB frames, so that
motion masks, GT and the 2D model's maps line up with it pixel for pixel: per grid cell, the
rectified camera coordinates (x right, y down, z forward) of a point that projects into it
and its range r = |(x, y, z)|; a cell without a point holds zeros.

Where several points fall into one cell, the nearest one (smallest z) wins: a z-buffer, as a
camera would see it. (The authors write points in file order, so a far point can hide a
near one.) Points are binned straight into the grid cells, rather than drawn at full image
size and then resized, so no point is lost to resampling. Points beyond ``max_depth`` are
dropped rather than clipped to it: a clipped z with unclipped x and y is a point that does
not exist.

``normalise`` maps the metric channels to (0, 1) with the authors' fixed KITTI ranges, so
that 0 still means "no point". ``fill_gaps`` gives the empty cells between points their
nearest point: a LiDAR network's input (docs/lidar.md, "Sparse or filled input").
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from stages.frames import FULL, Box, box_pixels

#: The authors' normalisation ranges of (x, y, z, r), metres (KITTI).
XYZR_LOW = np.array([-52.0, -4.0, 1.0, 2.0], dtype=np.float32)
XYZR_HIGH = np.array([53.0, 15.0, 70.0, 80.0], dtype=np.float32)
MAX_DEPTH = 70.0  # metres, the authors' depth limit
EDGE = 1e-3  # normalised values stay in [EDGE, 1 - EDGE], so that 0 is only "empty"


def range_map(
    points: np.ndarray,
    camera: np.ndarray,
    image_size: tuple[int, int],
    grid: tuple[int, int],
    max_depth: float = MAX_DEPTH,
    box: Box = FULL,
) -> np.ndarray:
    """(h, w, 4) float32 (x, y, z, r) of the nearest point per cell of ``grid``.

    points: (N, 3) in rectified camera coordinates; camera: (3, 4) projection matrix of the
    image of ``image_size`` (H, W) (e.g. KITTI's P_rect_02), applied to homogeneous
    rectified coordinates. The grid covers the part ``box`` of the image: exactly the
    pixels ``stages.frames`` crops there for the frame and its labels."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    z = points[:, 2]
    ahead = (z > 0) & (z <= max_depth)
    points, z = points[ahead], z[ahead]
    pixels = np.c_[points, np.ones(len(points))] @ np.asarray(camera, dtype=np.float64).T
    u, v = pixels[:, 0] / pixels[:, 2], pixels[:, 1] / pixels[:, 2]
    # pixel centres are at integer coordinates (P's convention): pixel i covers
    # [i - 0.5, i + 0.5), and grid cell j the pixels j * W/w ... (j + 1) * W/w - 1
    y0, x0, height, width = box_pixels(box, *image_size)
    u, v = u + 0.5 - x0, v + 0.5 - y0
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    h, w = grid
    col = np.minimum((u[inside] * (w / width)).astype(np.int64), w - 1)
    row = np.minimum((v[inside] * (h / height)).astype(np.int64), h - 1)
    points, z = points[inside], z[inside]
    cell = row * w + col
    order = np.lexsort((z, cell))  # by cell, nearest first within a cell
    cells, first = np.unique(cell[order], return_index=True)
    nearest = points[order[first]]
    out = np.zeros((h * w, 4), dtype=np.float32)
    out[cells, :3] = nearest
    out[cells, 3] = np.linalg.norm(nearest, axis=1)
    return out.reshape(h, w, 4)


def pinhole(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """(3, 4) [K | 0] of a pinhole camera (pixels): camera coordinates -> pixels."""
    return np.array([[fx, 0.0, cx, 0.0], [0.0, fy, cy, 0.0], [0.0, 0.0, 1.0, 0.0]])


def depth_on_grid(
    depth: np.ndarray,
    camera: np.ndarray,
    grid: tuple[int, int],
    max_depth: float = MAX_DEPTH,
    box: Box = FULL,
) -> np.ndarray:
    """``range_map`` of a dense depth image: every pixel (u, v) with a depth z in (0,
    ``max_depth``] is the point z K^-1 (u, v, 1) of the pinhole ``camera`` (3, 4) [K | 0].

    The same cells and the same winners as ``range_map`` of those points (the nearest per
    cell, the first in raster order on a tie; tested), in linear time: a cell's pixels are a
    block of the image, so the nearest depth per cell is two ``minimum.reduceat`` and only
    the winners are back-projected. A grid finer than the image takes ``range_map``'s path."""
    height, width = depth.shape
    y0, x0, box_h, box_w = box_pixels(box, height, width)
    h, w = grid
    if h > box_h or w > box_w:
        v, u = np.nonzero(depth > 0)
        return range_map(_back_project(depth, camera, v, u), camera, depth.shape, grid, box=box)
    z = depth[y0 : y0 + box_h, x0 : x0 + box_w].astype(np.float64)
    z = np.where((z > 0) & (z <= max_depth), z, np.inf)
    # pixel i of the box lies in cell floor((i + 0.5) * cells / pixels), as in range_map
    rows = np.minimum(((np.arange(box_h) + 0.5) * (h / box_h)).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(box_w) + 0.5) * (w / box_w)).astype(np.int64), w - 1)
    row_starts = np.searchsorted(rows, np.arange(h))
    col_starts = np.searchsorted(cols, np.arange(w))
    nearest = np.minimum.reduceat(np.minimum.reduceat(z, col_starts, axis=1), row_starts, axis=0)
    cell = rows[:, None] * w + cols[None, :]
    winner = np.flatnonzero((z == nearest[rows][:, cols]) & np.isfinite(z))
    cells, first = np.unique(cell.ravel()[winner], return_index=True)
    v, u = np.divmod(winner[first], box_w)
    points = _back_project(depth, camera, v + y0, u + x0)
    out = np.zeros((h * w, 4), dtype=np.float32)
    out[cells, :3] = points
    out[cells, 3] = np.linalg.norm(points, axis=1)
    return out.reshape(h, w, 4)


def _back_project(
    depth: np.ndarray, camera: np.ndarray, v: np.ndarray, u: np.ndarray
) -> np.ndarray:
    """(N, 3) camera coordinates of pixels (v, u) of a depth image under [K | 0]."""
    z = depth[v, u].astype(np.float64)
    pixels = np.stack([u, v, np.ones_like(u)]).astype(np.float64)
    return (np.linalg.inv(np.asarray(camera, dtype=np.float64)[:, :3]) @ pixels * z).T


def sweep_on_grid(
    points: np.ndarray,
    lidar_to_camera: np.ndarray,
    camera: np.ndarray,
    image_size: tuple[int, int],
    grid: tuple[int, int],
    box: Box = FULL,
) -> np.ndarray:
    """``range_map`` of a sweep (N, >=3; x, y, z first) in the LiDAR's own frame, moved into
    the camera's coordinates by the (4, 4) ``lidar_to_camera`` first."""
    xyz = np.asarray(points, dtype=np.float64)[:, :3]
    in_camera = xyz @ lidar_to_camera[:3, :3].T + lidar_to_camera[:3, 3]
    return range_map(in_camera, camera, image_size, grid, box=box)


def normalise(metric: np.ndarray) -> np.ndarray:
    """(..., 4) metric (x, y, z, r) -> [EDGE, 1 - EDGE] per channel; empty cells stay 0."""
    scaled = (metric - XYZR_LOW) / (XYZR_HIGH - XYZR_LOW)
    scaled = np.clip(scaled, EDGE, 1 - EDGE).astype(np.float32)
    return np.where(valid(metric)[..., None], scaled, np.float32(0))


def valid(metric: np.ndarray) -> np.ndarray:
    """(...) bool: the cells that hold a point (a point has range > 0)."""
    return metric[..., 3] > 0


def fill_gaps(maps: np.ndarray, spacings: float) -> np.ndarray:
    """(..., h, w, 4) maps (metric or normalised) with every empty cell given the values of
    its nearest point, where that point lies within ``spacings`` mean point spacings; cells
    farther from any point (the sky, beyond the range) stay empty. The mean spacing of a
    map is 1 / sqrt(its share of filled cells), in cells: the rule reads the same at any
    grid size or beam count. ``spacings`` 0: the maps unchanged."""
    if spacings <= 0:
        return maps
    out = np.zeros_like(maps)
    for index in np.ndindex(maps.shape[:-3]):
        cells = maps[index]
        empty = ~valid(cells)
        share = 1.0 - empty.mean()
        if share == 0:
            continue
        distance, (rows, cols) = ndimage.distance_transform_edt(empty, return_indices=True)
        near = distance <= spacings / np.sqrt(share)
        out[index] = np.where(near[..., None], cells[rows, cols], 0)
    return out
