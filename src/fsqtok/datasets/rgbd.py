"""Synthetic RGB-D for UViM depth: a numpy ray-caster whose surfaces carry real photo textures.

A room corner (floor, back wall, one side wall) holds 1-4 spheres and 0-2 boxes of random sizes
and places. Walls and objects are textured with scikit-image's real textures and photo crops,
shaded by one light. Every scene is then scaled by a random factor ``s`` (log-uniform in
``SCALE_RANGE``): geometry and all wall and object textures scale with it, so on its own the picture
says nothing about ``s``, and the depth is multiplied by it.

One global cue makes the scale *partly* inferable: the floor is a plain checkerboard of tiles whose size
is drawn in **metres** (log-uniform in ``TILE_RANGE``, a factor of 2), not in scene units. How many
tiles the floor shows, read together with their perspective, pins ``s`` to within that factor of 2
(against a factor of 10 without it). The cue lies in the floor, the lower part of the picture,
while the metric depth of every wall and object pixel depends on it: reading it is global reasoning
(stage II's transformer attends over the whole image), and the rest of the scale, the factor of 2,
is only in the guide code, which has seen the target. So ``f(x, empty)`` is limited, an LM that
reads the tiles can do better, and the oracle better still. Without the cue no LM can beat
``f(x, empty)`` on the scale, whatever it is trained on (greedy decoding of an unpredictable code).
With ``TILE_RANGE`` scaled together with ``SCALE_RANGE`` the picture is identical at every scale
(the tests pin this). Depth is exact z-depth in metres. Sample ``i`` of a split is a pure function
of ``(seed, split, i)``, so datasets are unbounded, need no files and resume exactly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .textures import split_textures, texture

SPLITS = {"train": 0, "val": 1, "test": 2}
SCALE_RANGE = (0.15, 1.5)  # metres per scene unit; unit scenes span ~1.2-10 units -> ~0.2-15 m
TILE_RANGE = (0.5, 1.0)  # floor tile side in metres (the one cue to the scale, up to this factor of 2)
TILE_DARK = 0.3  # brightness of the dark floor tiles (the light ones are 1)


def _sample(tex: np.ndarray, a: np.ndarray, b: np.ndarray, freq: float) -> np.ndarray:
    """Texture ``tex`` tiled over surface coordinates ``(a, b)`` (scene units) at ``freq`` texels per unit."""
    ty = np.floor(a * freq).astype(np.int64) % tex.shape[0]
    tx = np.floor(b * freq).astype(np.int64) % tex.shape[1]
    return tex[ty, tx]


def render(size: int, rng: np.random.Generator, split: str = "train") -> tuple[np.ndarray, np.ndarray, float]:
    """One scene: rgb ``(3, s, s)`` in [0, 1], z-depth ``(s, s)`` in metres, and its scale factor (metres per unit)."""
    names = split_textures(split)
    fov = np.deg2rad(rng.uniform(45, 75))
    f = 0.5 * size / np.tan(fov / 2)
    v, u = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    rays = np.stack([(u - size / 2) / f, -(v - size / 2) / f, np.ones_like(u)], -1)  # z = 1: t is z-depth
    unit = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
    light = np.array([rng.uniform(-0.6, 0.6), 0.8, -0.5])
    light /= np.linalg.norm(light)
    cam_h, wall_z, side_x = rng.uniform(0.8, 2.0), rng.uniform(3.5, 9.0), rng.choice([-1, 1]) * rng.uniform(1.5, 4)
    scale = float(np.exp(rng.uniform(*np.log(SCALE_RANGE))))
    tile = float(np.exp(rng.uniform(*np.log(TILE_RANGE)))) / scale  # the metric floor tile, in scene units
    depth = np.full((size, size), np.inf)
    rgb = np.zeros((size, size, 3))

    def paint(t: np.ndarray, colour: np.ndarray) -> None:
        nonlocal depth, rgb
        hit = np.isfinite(t) & (t > 1e-6) & (t < depth)
        depth = np.where(hit, t, depth)
        rgb = np.where(hit[..., None], colour, rgb)

    def surface() -> tuple[np.ndarray, np.ndarray, float]:
        return texture(names[rng.integers(len(names))]), rng.uniform(0.5, 1.0, 3), rng.uniform(20, 80)

    with np.errstate(divide="ignore", invalid="ignore"):
        for axis, offset in ((1, -cam_h), (2, wall_z), (0, side_x)):  # floor, back wall, side wall
            t = offset / rays[..., axis]
            p = rays * t[..., None]
            a, b = [p[..., k] for k in range(3) if k != axis]
            tex, tint, freq = surface()
            colour = _sample(tex, a, b, freq) * tint
            if axis == 1:  # the floor: plain tinted tiles of the metric checkerboard (no photo), distance fog
                checker = (np.floor(a / tile) + np.floor(b / tile)) % 2
                colour = (tint * np.clip(1.1 - t / 15, 0.4, 1)[..., None] * np.where(checker == 1, TILE_DARK, 1.0)[..., None])
            paint(np.where(t > 0, t, np.inf), colour)
        for _ in range(rng.integers(1, 5)):  # spheres resting on the floor
            r = rng.uniform(0.15, 1.0)
            c = np.array([rng.uniform(-2.5, 2.5), -cam_h + r, rng.uniform(1.0 + r, wall_z - r)])
            bq = unit @ c
            disc = bq**2 - (c @ c - r**2)
            s = np.where(disc > 0, bq - np.sqrt(np.maximum(disc, 0)), np.inf)
            p = unit * s[..., None]
            n = (p - c) / r
            tex, tint, freq = surface()
            shade = np.clip(n @ light, 0.15, 1.0)[..., None]
            paint(s * unit[..., 2], _sample(tex, n[..., 1] * 2, np.arctan2(n[..., 0], n[..., 2]), freq / 4) * tint * shade)
        for _ in range(rng.integers(0, 3)):  # axis-aligned boxes on the floor
            half = rng.uniform(0.15, 0.9, 3)
            c = np.array([rng.uniform(-2.5, 2.5), -cam_h + half[1], rng.uniform(1.5 + half[2], wall_z - half[2])])
            lo, hi = (c - half) / rays, (c + half) / rays
            t_near = np.max(np.minimum(lo, hi), -1)
            t_far = np.min(np.maximum(lo, hi), -1)
            t = np.where((t_near < t_far) & (t_near > 0), t_near, np.inf)
            p = rays * t[..., None]
            face = np.argmax(np.abs((p - c) / half), -1)  # the axis of the face hit
            normal = np.zeros_like(p)
            np.put_along_axis(normal, face[..., None], np.sign(np.take_along_axis(p - c, face[..., None], -1)), -1)
            tex, tint, freq = surface()
            shade = np.clip(normal @ light, 0.2, 1.0)[..., None]
            paint(t, _sample(tex, p[..., 1] + p[..., 2], p[..., 0] + p[..., 2], freq) * tint * shade)
    return rgb.transpose(2, 0, 1).clip(0, 1), depth * scale, scale


def synthetic_rgbd(n: int, size: int = 64, split: str = "train", seed: int = 0,
                   start: int = 0) -> tuple[Tensor, Tensor]:
    """Samples ``start .. start+n-1`` of a split: rgb ``(n, 3, s, s)`` in [-1, 1], depth ``(n, 1, s, s)`` metres."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    out = [render(size, np.random.default_rng([seed, SPLITS[split], i]), split) for i in range(start, start + n)]
    rgb = torch.from_numpy(np.stack([o[0] for o in out])).float() * 2 - 1
    depth = torch.from_numpy(np.stack([o[1] for o in out])).float()[:, None]
    return rgb, depth


class SyntheticRGBD(torch.utils.data.Dataset):
    """Map-style view of :func:`synthetic_rgbd`: item ``i`` is ``{"image": (3, s, s), "target": (1, s, s)}``."""

    def __init__(self, length: int, size: int = 64, split: str = "train", seed: int = 0) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.length, self.size, self.split, self.seed = length, size, split, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        rgb, depth = synthetic_rgbd(1, self.size, self.split, self.seed, start=i)
        return {"image": rgb[0], "target": depth[0]}
