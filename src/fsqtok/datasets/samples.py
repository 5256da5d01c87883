"""Built-in sample data from real media that ships inside installed packages (no network).

* images: seeded random crops of scikit-image's bundled photos (BSD/CC0; its colour wheel
  adds saturated hues the photos lack), split into train and val **by source photo**, so no
  photo feeds both;
* depth: a small numpy ray-caster renders RGB-D pairs (floor and wall textured with
  scikit-image's real textures, plus shaded spheres) with exact per-pixel depth;
* audio: seeded crops of a real two-speaker conversation (30 s, 16 kHz) that ships inside fsqtok
  (``fsqtok/datasets/assets/speech.flac``: the sample of the ``pyannote.audio`` wheel, MIT, re-encoded
  losslessly; see ``LICENSE-speech.txt`` beside it), split by time: the last 6 s are val;
* video: real generated motion from FFmpeg's lavfi sources through PyAV.

Every function is deterministic for a given ``seed`` and takes well under a second for a
few dozen samples. Images and depth textures need scikit-image: ``pip install 'fsqtok[samples]'``
(``make setup`` does this); the speech needs nothing more.
"""

from __future__ import annotations

import importlib.resources
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

TRAIN_PHOTOS = ("astronaut", "chelsea", "hubble_deep_field", "immunohistochemistry", "retina",
                "motorcycle_left", "motorcycle_right", "colorwheel")
VAL_PHOTOS = ("coffee", "rocket")
TEXTURES = ("brick", "grass", "gravel")
SPEECH_FILE = "assets/speech.flac"  # inside this package
SPEECH_VAL_SECONDS = 6.0
VIDEO_SOURCES = ("mandelbrot", "life", "testsrc2", "cellauto")


class SampleDataError(RuntimeError):
    """A sample source is not installed; the message names the package to install."""


def _check_split(split: str) -> str:
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    return split


@lru_cache(maxsize=None)
def _skimage_array(name: str) -> np.ndarray:
    try:
        import skimage.data
    except ImportError:
        raise SampleDataError("sample images need scikit-image: pip install 'fsqtok[samples]'") from None
    if name.startswith("motorcycle_"):  # the two views of the Middlebury stereo pair
        left, right, _ = skimage.data.stereo_motorcycle()
        return np.asarray(left if name.endswith("left") else right)
    return np.asarray(getattr(skimage.data, name)())


def _photo(name: str) -> Tensor:
    """float32 ``(3, H, W)`` in [-1, 1]."""
    a = _skimage_array(name)
    a = np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a[..., :3]
    return torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1) / 127.5 - 1


def sample_images(n: int, size: int = 64, split: str = "train", seed: int = 0) -> Tensor:
    """``n`` real colour crops, float32 ``(n, 3, size, size)`` in [-1, 1].

    Each crop takes a random photo of the split, a random square of 25-100% of its short
    side, a random horizontal flip, and an antialiased resize to ``size``.
    """
    photos = [_photo(p) for p in (TRAIN_PHOTOS if _check_split(split) == "train" else VAL_PHOTOS)]
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        img = photos[int(torch.randint(len(photos), (1,), generator=g))]
        h, w = img.shape[1:]
        side = int(min(h, w) * (0.25 + 0.75 * float(torch.rand((), generator=g))))
        top = int(torch.randint(h - side + 1, (1,), generator=g))
        left = int(torch.randint(w - side + 1, (1,), generator=g))
        crop = img[:, top : top + side, left : left + side]
        if bool(torch.rand((), generator=g) < 0.5):
            crop = crop.flip(-1)
        out[i] = F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return out.clamp_(-1, 1)


# --------------------------------------------------------------------------- depth


def _texture(name: str) -> np.ndarray:
    return _skimage_array(name).astype(np.float32) / 255.0


def _render_rgbd(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One ray-cast scene: rgb ``(3, s, s)`` in [0, 1] and z-depth ``(s, s)`` in metres."""
    fov = np.deg2rad(rng.uniform(50, 70))
    f = 0.5 * size / np.tan(fov / 2)
    v, u = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    rays = np.stack([(u - size / 2) / f, -(v - size / 2) / f, np.ones_like(u)], -1)  # z = 1 per ray
    cam_h = rng.uniform(1.0, 1.8)
    wall_z = rng.uniform(4.0, 8.0)
    tex_floor, tex_wall = (_texture(t) for t in rng.choice(TEXTURES, 2, replace=False))
    tint_floor, tint_wall = rng.uniform(0.4, 1.0, 3), rng.uniform(0.4, 1.0, 3)

    def sample_tex(tex: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ty = np.floor(a * 60).astype(np.int64) % tex.shape[0]
        tx = np.floor(b * 60).astype(np.int64) % tex.shape[1]
        return tex[ty, tx]

    # floor y = -cam_h: hit where ray_y < 0 at t = cam_h / -ray_y (t is z-depth since ray_z = 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(rays[..., 1] < 0, cam_h / -rays[..., 1], np.inf)
    t_wall = np.full_like(t_floor, wall_z)
    use_floor = t_floor < t_wall
    depth = np.where(use_floor, t_floor, t_wall)
    px, pz = rays[..., 0] * depth, depth
    py = rays[..., 1] * depth
    floor_val = sample_tex(tex_floor, pz, px)[..., None] * tint_floor * np.clip(1.2 - pz / 10, 0.3, 1)[..., None]
    wall_val = sample_tex(tex_wall, py + cam_h, px)[..., None] * tint_wall * 0.9
    rgb = np.where(use_floor[..., None], floor_val, wall_val)
    # spheres resting on the floor, Lambertian shading from one light
    light = np.array([0.4, 0.8, -0.4])
    light /= np.linalg.norm(light)
    for _ in range(rng.integers(1, 4)):
        r = rng.uniform(0.3, 0.8)
        c = np.array([rng.uniform(-1.5, 1.5), -cam_h + r, rng.uniform(2.0, wall_z - r)])
        d = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
        b = (d @ c)
        disc = b**2 - (c @ c - r**2)
        hit = disc > 0
        s = np.where(hit, b - np.sqrt(np.where(hit, disc, 0)), np.inf)  # distance along unit ray
        z = s * d[..., 2]
        closer = hit & (z > 0) & (z < depth)
        normal = (d * np.where(closer, s, 0)[..., None] - c) / r  # only used where the sphere is hit
        shade = np.clip(normal @ light, 0.1, 1.0)
        color = rng.uniform(0.2, 1.0, 3)
        rgb = np.where(closer[..., None], shade[..., None] * color, rgb)
        depth = np.where(closer, z, depth)
    return rgb.transpose(2, 0, 1).clip(0, 1), depth


def sample_rgbd(n: int, size: int = 64, split: str = "train", seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` rendered RGB-D pairs: rgb ``(n, 3, s, s)`` in [-1, 1] and depth ``(n, 1, s, s)`` in metres (exact).

    Train and val draw from disjoint random streams of the renderer.
    """
    rng = np.random.default_rng([seed, 0 if _check_split(split) == "train" else 1])
    pairs = [_render_rgbd(size, rng) for _ in range(n)]
    rgb = torch.from_numpy(np.stack([p[0] for p in pairs])).float() * 2 - 1
    depth = torch.from_numpy(np.stack([p[1] for p in pairs])).float()[:, None]
    return rgb, depth


def sample_depth(n: int, size: int = 64, split: str = "train", seed: int = 0) -> Tensor:
    """The depth half of :func:`sample_rgbd`: float32 ``(n, 1, size, size)`` metres."""
    return sample_rgbd(n, size, split, seed)[1]


# --------------------------------------------------------------------------- audio


@lru_cache(maxsize=4)
def _speech(sample_rate: int) -> Tensor:
    """The bundled conversation, mono float32 ``(T,)`` at ``sample_rate``."""
    from ..media import read_audio

    with importlib.resources.as_file(importlib.resources.files(__package__) / SPEECH_FILE) as path:
        if not path.is_file():
            raise SampleDataError(f"{path}: the sample speech is missing from this fsqtok install; reinstall fsqtok")
        wav, _ = read_audio(path, sample_rate=sample_rate)
    return wav.mean(0)


def sample_audio(n: int, seconds: float = 1.0, sample_rate: int = 16000, split: str = "train", seed: int = 0) -> Tensor:
    """``n`` real speech clips, float32 ``(n, 1, T)`` with ``T = seconds * sample_rate``, peak-normalized to 0.9.

    Train clips come from the first 24 s of the conversation, val clips from the last 6 s.
    """
    speech = _speech(sample_rate)
    cut = len(speech) - int(SPEECH_VAL_SECONDS * sample_rate)
    region = speech[:cut] if _check_split(split) == "train" else speech[cut:]
    length = int(round(seconds * sample_rate))
    if length > len(region):
        raise ValueError(f"seconds={seconds} is longer than the {split} speech ({len(region) / sample_rate:.1f} s)")
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(len(region) - length + 1, (n,), generator=g).tolist()
    clips = torch.stack([region[s : s + length] for s in starts])[:, None]
    peak = clips.abs().amax(-1, keepdim=True).clamp_min(1e-4)
    return clips / peak * 0.9


# --------------------------------------------------------------------------- video


def sample_videos(n: int, frames: int = 9, size: int = 64, split: str = "train", seed: int = 0) -> Tensor:
    """``n`` clips of generated motion, float32 ``(n, 3, frames, size, size)`` in [-1, 1].

    Each clip picks a lavfi source and a start offset at random; val uses other offsets.
    """
    import av

    g = torch.Generator().manual_seed(seed * 2 + (0 if _check_split(split) == "train" else 1))
    out = torch.empty(n, 3, frames, size, size)
    for i in range(n):
        source = VIDEO_SOURCES[int(torch.randint(len(VIDEO_SOURCES), (1,), generator=g))]
        skip = int(torch.randint(0, 40, (1,), generator=g))
        spec = f"{source}=s={size}x{size}:r=8" + (f":seed={seed * 1000 + i}" if source in ("life", "cellauto") else "")
        with av.open(spec, format="lavfi") as container:
            decoded = []
            for k, frame in enumerate(container.decode(video=0)):
                if k >= skip:
                    decoded.append(frame.to_ndarray(format="rgb24"))
                if len(decoded) == frames:
                    break
        out[i] = torch.from_numpy(np.stack(decoded)).permute(3, 0, 1, 2).float() / 127.5 - 1
    return out
