"""Face-clip geometry and pixels, shared by the training dataset and the video detector so both feed the
model the same tensors: which stored crops make a clip, crop / resize / augment a clip of frames
``[T, H, W, 3]`` uint8 RGB (one random draw for every frame), and the uint8 -> ImageNet-normalised
``[3, T, S, S]`` float32 model input. Randomness comes from Python's ``random``, seeded per item.
"""
from __future__ import annotations

import math
import random

import cv2
import numpy as np
import torch
from timm.data import IMAGENET_DEFAULT_MEAN as IMAGENET_MEAN  # the image datasets' normalisation too
from timm.data import IMAGENET_DEFAULT_STD as IMAGENET_STD

_STD = torch.tensor(IMAGENET_STD)
_SCALE = (1.0 / (255.0 * _STD)).view(3, 1, 1, 1)  # uint8 -> normalised in one multiply-add
_SHIFT = (-torch.tensor(IMAGENET_MEAN) / _STD).view(3, 1, 1, 1)
_LUT = torch.arange(256, dtype=torch.float32).repeat(3, 1).mul_(_SCALE.view(3, 1)).add_(_SHIFT.view(3, 1)).numpy()


def clip_span(num_frames: int, step: int) -> int:
    """Stored crops covered by a clip of ``num_frames`` crops ``step`` apart."""
    return (num_frames - 1) * step + 1


def clip_positions(length: int, num_frames: int, step: int, start: int) -> list[int]:
    """Positions ``start, start + step, ...`` in a segment of ``length`` crops, clamped to its last crop."""
    return [min(start + k * step, length - 1) for k in range(num_frames)]


def resized_crop(frames: np.ndarray, size: int, box: tuple[int, int, int, int], flip: bool) -> np.ndarray:
    """The same crop ``box`` (x, y, w, h) of every frame [T, H, W, 3], resized to ``size``, optionally
    mirrored -> [T, size, size, 3] uint8 (OpenCV per frame: several times faster than a generic pipeline)."""
    x, y, w, h = box
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for t, frame in enumerate(frames):
        crop = frame[y:y + h, x:x + w]
        interp = cv2.INTER_AREA if w > size else cv2.INTER_LINEAR
        cv2.resize(crop, (size, size), dst=out[t], interpolation=interp)
        if flip:
            cv2.flip(out[t], 1, dst=out[t])
    return out


def centre_box(height: int, width: int) -> tuple[int, int, int, int]:
    """The largest centred square (x, y, w, h) of a ``height`` x ``width`` frame."""
    side = min(height, width)
    return (width - side) // 2, (height - side) // 2, side, side


def centre_resize(frames: np.ndarray, size: int) -> np.ndarray:
    """Evaluation geometry: [T, H, W, 3] -> [T, size, size, 3], the centre square resized (unchanged when
    the frames are already ``size`` x ``size``)."""
    height, width = frames.shape[1:3]
    if (height, width) == (size, size):
        return frames
    return resized_crop(frames, size, centre_box(height, width), flip=False)


def random_crop_box(height: int, width: int, scale: tuple[float, float] = (0.5, 1.0),
                    ratio: tuple[float, float] = (0.9, 1.1)) -> tuple[int, int, int, int]:
    """A RandomResizedCrop box (x, y, w, h) drawn from Python's ``random`` (seeded per item)."""
    area = height * width
    for _ in range(10):
        target = area * random.uniform(*scale)
        aspect = math.exp(random.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return random.randint(0, width - w), random.randint(0, height - h), w, h
    return centre_box(height, width)


def photometric_transform():
    """albumentations colour / quality augmentation, applied with ONE random draw to every frame of a
    clip (``images=`` target): brightness-contrast and hue-saturation jitter, JPEG re-compression,
    Gaussian noise, Gaussian blur. Hue-saturation and noise are albumentations' transforms with a faster clip path
    (:mod:`.augment`: the same draws, bit-identical frames)."""
    import albumentations as A

    from .augment import ClipGaussNoise, ClipHueSaturationValue

    return A.Compose([
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
        ClipHueSaturationValue(hue_shift_limit=5, sat_shift_limit=15, val_shift_limit=10, p=0.3),
        A.ImageCompression(quality_range=(50, 100), p=0.3),
        ClipGaussNoise(std_range=(0.01, 0.05), p=0.2),
        A.GaussianBlur(blur_limit=(3, 5), p=0.1),
    ])


class ClipAugmentation:
    """Training geometry: [T, H, W, 3] uint8 -> [T, size, size, 3] uint8 with one draw for every frame:
    a random resized crop, a horizontal flip (p = 0.5), then :func:`photometric_transform`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.photometric = photometric_transform()

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        height, width = frames.shape[1:3]
        box, flip = random_crop_box(height, width), random.random() < 0.5
        frames = resized_crop(frames, self.size, box, flip)
        # One stream of draws for the whole recipe, seeded from this item's. Not Compose.set_random_seed: it seeds
        # every transform alike, so their draws coincide and a rarer transform is only ever applied with the others.
        self.photometric.set_random_state(np.random.default_rng(random.getrandbits(64)),
                                          random.Random(random.getrandbits(64)))
        return self.photometric(images=frames)["images"]


def clip_tensor(frames: np.ndarray) -> torch.Tensor:
    """Face crops [T, S, S, 3] uint8 RGB -> the model input [3, T, S, S] float32, ImageNet-normalised.

    One ``cv2.split`` of the clip into colour planes, each mapped through a 256-entry table of the normalised
    values (``x * _SCALE + _SHIFT``, computed in float32 as the plain formula does) straight into its slice of
    the output: one pass over the output instead of a strided cast, a multiply and an add (~25% faster).
    """
    frames = np.ascontiguousarray(frames)
    t, h, w = frames.shape[:3]
    out = torch.empty((3, t, h, w), dtype=torch.float32)
    planes = out.numpy().reshape(3, t * h, w)
    for channel, plane in enumerate(cv2.split(frames.reshape(t * h, w, 3))):
        cv2.LUT(plane, _LUT[channel], dst=planes[channel])
    return out


def clip_uint8(frames: np.ndarray) -> torch.Tensor:
    """Face crops [T, S, S, 3] uint8 RGB -> the same [T, S, S, 3] uint8 tensor (no copy when contiguous): a quarter
    of the float clip's bytes to pin and copy, and no channel transpose on the CPU (~0.7 ms per 16 x 224^2 clip);
    :func:`normalize_clips` finishes it on the device."""
    return torch.from_numpy(np.ascontiguousarray(frames))


def normalize_clips(x: torch.Tensor) -> torch.Tensor:
    """uint8 clips [B, T, S, S, 3] (channels last, on any device) -> [B, 3, T, S, S] float32 ImageNet-normalised,
    contiguous, exactly as :func:`clip_tensor` gives them (the same float32 multiply-add)."""
    x = x.permute(0, 4, 1, 2, 3).to(torch.float32, memory_format=torch.contiguous_format)  # [B, 3, T, S, S]
    return x.mul_(_SCALE.to(x.device)).add_(_SHIFT.to(x.device))
