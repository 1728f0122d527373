"""Training pairs `(noisy_source, noisy_target, mask)` from three kinds of data.

- synthetic: a folder of clean images, corrupted independently twice (or once, with
  the clean image as target: Noise2Clean);
- pairs: two folders of real noisy shots of the same scenes (same file names);
- single: one folder of noisy images; the loop makes Neighbor2Neighbor sub-images.

Images are decoded once and kept in memory as uint8 (H, W, C). Item `i` is drawn from
`numpy.random.default_rng([seed, i])`, so a run resumes exactly at any step and any
number of DataLoader workers or DDP ranks yields the same examples.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .io import to_float, to_uint8
from .noise import training_pair

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def list_images(folder: str | Path) -> list[Path]:
    """Image files in `folder`, sorted by name; ValueError if there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    return files


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Drop alpha and convert gray <-> RGB so that image (H, W, C) has `channels` channels."""
    c = image.shape[2]
    image = image[..., : 3 if c >= 3 else 1]
    if image.shape[2] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=2)
    luma = np.round(image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
    return luma[..., None].astype(image.dtype)


def training_image(image: np.ndarray, channels: int, min_size: int) -> np.ndarray:
    """A decoded image (H, W, C, any dtype) as the datasets take it: uint8 (H, W, channels), alpha
    dropped, padded (reflected) to at least `min_size` pixels a side."""
    image = to_uint8(to_channels(image, channels))
    ph, pw = max(0, min_size - image.shape[0]), max(0, min_size - image.shape[1])
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(image.shape[:2]) > 1 else "edge")
    return image


def random_crop(images: list[np.ndarray], size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The same random crop (size × size), flip and 90° turn of every array in `images` (equal shapes)."""
    h, w = images[0].shape[:2]
    y, x = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    flip, turns = bool(rng.integers(2)), int(rng.integers(4))
    out = []
    for image in images:
        crop = image[y:y + size, x:x + size]
        crop = crop[:, ::-1] if flip else crop
        out.append(np.ascontiguousarray(np.rot90(crop, turns)))
    return out


def _tensors(noisy_source, noisy_target, mask):
    chw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1), dtype=np.float32))  # noqa: E731
    return chw(noisy_source), chw(noisy_target), chw(mask)


class SyntheticPairs(Dataset):
    """Noisy pairs made from clean images: item i -> ((C, s, s), (C, s, s), (1, s, s)) float32."""

    def __init__(self, images, noise, crop=96, length=10**9, seed=0, noise_range=None, clean_target=False):
        self.images, self.noise, self.crop, self.length, self.seed = images, noise, crop, length, seed
        self.noise_range, self.clean_target = noise_range, clean_target

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, i])
        image = self.images[int(rng.integers(len(self.images)))]
        (clean,) = random_crop([image], self.crop, rng)
        return _tensors(*training_pair(to_float(clean), self.noise, rng, self.noise_range, self.clean_target))


class NoisyPairs(Dataset):
    """Aligned crops of two real noisy shots of one scene, in random order."""

    def __init__(self, images_a, images_b, crop=96, length=10**9, seed=0):
        for a, b in zip(images_a, images_b):
            if a.shape != b.shape:
                raise ValueError(f"paired images differ in size: {a.shape} vs {b.shape}")
        self.pairs, self.crop, self.length, self.seed = list(zip(images_a, images_b)), crop, length, seed

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, i])
        a, b = random_crop(list(self.pairs[int(rng.integers(len(self.pairs)))]), self.crop, rng)
        if rng.integers(2):
            a, b = b, a
        a, b = to_float(a), to_float(b)
        return _tensors(a, b, np.ones(a.shape[:2] + (1,), np.float32))


class SingleNoisy(Dataset):
    """Crops of single noisy images; source and target are the same crop (Neighbor2Neighbor)."""

    def __init__(self, images, crop=96, length=10**9, seed=0):
        self.images, self.crop, self.length, self.seed = images, crop + crop % 2, length, seed

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, i])
        (noisy,) = random_crop([self.images[int(rng.integers(len(self.images)))]], self.crop, rng)
        noisy = to_float(noisy)
        return _tensors(noisy, noisy, np.ones(noisy.shape[:2] + (1,), np.float32))


def neighbor_subsample(noisy: torch.Tensor, generator: torch.Generator | None = None):
    """Neighbor2Neighbor's random neighbour sub-sampler (Huang et al. 2021).

    noisy: (B, C, H, W) with H, W even. In every 2×2 cell two different adjacent pixels
    are picked at random, one for each sub-image. Returns two (B, C, H/2, W/2) tensors
    and the index pair so the same sampling can be applied to the network output.
    """
    b, c, h, w = noisy.shape
    # the 4 adjacent (non-diagonal) ordered pairs of positions in a 2×2 cell (0 1 / 2 3)
    pairs = torch.tensor([[0, 1], [1, 0], [0, 2], [2, 0], [1, 3], [3, 1], [2, 3], [3, 2]], device=noisy.device)
    choice = torch.randint(0, 8, (b, 1, h // 2, w // 2), generator=generator, device="cpu").to(noisy.device)
    idx = pairs[choice]  # (B, 1, H/2, W/2, 2)
    return idx[..., 0], idx[..., 1]


def apply_subsample(image: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Pick, in every 2×2 cell of image (B, C, H, W), the position index (B, 1, H/2, W/2) in 0..3."""
    b, c, h, w = image.shape
    cells = image.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h // 2, w // 2, 4)
    return torch.gather(cells, 4, index.unsqueeze(-1).expand(b, c, h // 2, w // 2, 1)).squeeze(-1)
