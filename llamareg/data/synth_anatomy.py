"""Synthetic anatomy in the manner of SynthMorph (Hoffmann et al., IEEE TMI 2022): shapes, not brains.

A label map is the arg-max of several smooth random fields, each warped by its own random smooth
deformation. A pair is that label map under two independent random diffeomorphisms (or, for a share
of pairs, under one: an already aligned pair), and its images give every label a random intensity,
then blur, bias field, gamma and noise. No template is involved, so a network trained on these pairs
cannot learn one anatomy: it has to match the two images.

Every draw comes from an explicit ``torch.Generator``, so a pair is a pure function of its seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from llamareg.data.synthetic import seeded_generator
from llamareg.spatial.functional import compose, integrate_velocity, resize_flow, resize_image, warp


@dataclass(frozen=True)
class AnatomyOptions:
    """How synthetic pairs are drawn (the ``data.synth_*`` config keys).

    Attributes:
        num_labels: Labels of each label map (SynthMorph: 26).
        shape_control_spacing: Voxels between the random fields' control points: the size of a blob.
        shape_warp: Largest displacement, in voxels, of each field's own deformation (wigglier outlines).
        max_displacement: Largest displacement, in voxels, of each image's deformation from the label map.
        control_spacing: Voxels between that deformation's control points.
        aligned_fraction: Share of pairs whose two images share one deformation (aligned up to contrast
            and noise), so the network learns to leave aligned images alone.
        shared_contrast: The two images of a pair take the same intensity per label (an image
            similarity such as MSE then applies); otherwise each image draws its own.
    """

    num_labels: int = 26
    shape_control_spacing: int = 8
    shape_warp: float = 3.0
    max_displacement: float = 6.0
    control_spacing: int = 12
    aligned_fraction: float = 0.2
    shared_contrast: bool = True

    def __post_init__(self) -> None:
        if self.num_labels < 2:
            raise ValueError(f"data.synth_labels must be >= 2, got {self.num_labels}")
        if self.shape_control_spacing < 2 or self.control_spacing < 2:
            raise ValueError(f"control spacings must be >= 2 voxels, got {self.shape_control_spacing} and {self.control_spacing}")
        if self.shape_warp < 0 or self.max_displacement < 0:
            raise ValueError(f"displacements must be >= 0 voxels, got {self.shape_warp} and {self.max_displacement}")
        if not 0 <= self.aligned_fraction <= 1:
            raise ValueError(f"data.synth_aligned_fraction must lie in [0, 1], got {self.aligned_fraction}")


def _uniform(generator: torch.Generator, low: float, high: float, size: Sequence[int] = ()) -> torch.Tensor:
    return low + (high - low) * torch.rand(tuple(size), generator=generator)


def _random_velocities(count: int, shape: Sequence[int], max_displacement: float, spacing: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random smooth stationary velocities on the half-resolution grid of ``shape``, in its voxels.

    Gaussian values on control points every ``spacing`` voxels, interpolated and scaled so that the
    longest vector is ``max_displacement`` full-resolution voxels. Integrating on the half grid costs
    8x less and loses nothing: the field varies over ``spacing`` >= 2 voxels.
    """
    grid = [max(2, -(-size // spacing) + 1) for size in shape]
    half = [max(2, (size + 1) // 2) for size in shape]
    velocity = resize_flow(torch.randn(count, 3, *grid, generator=generator), half)
    longest = velocity.flatten(2).norm(dim=1).amax(dim=1).clamp_min(1e-6).view(count, 1, 1, 1, 1)
    return velocity * (max_displacement / 2 / longest)


def _displacements(velocity: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The time-1 displacements of half-grid velocities, at full resolution ``shape``."""
    return resize_flow(integrate_velocity(velocity), shape)


def _random_displacements(
    count: int, shape: Sequence[int], max_displacement: float, spacing: int, generator: torch.Generator
) -> torch.Tensor:
    """``count`` random diffeomorphic displacements in one batch (cheaper than one by one)."""
    return _displacements(_random_velocities(count, shape, max_displacement, spacing, generator), shape)


def random_label_map(shape: Sequence[int], options: AnatomyOptions, generator: torch.Generator) -> torch.Tensor:
    """A label map of ``options.num_labels`` random smooth shapes, labels ``1..num_labels``.

    Args:
        shape: spatial shape ``(D, H, W)``.
        options: sizes and counts.
        generator: the source of randomness.

    Returns:
        ``(1, D, H, W)`` int64 label map; every voxel has a label (no background).

    Example:
        >>> labels = random_label_map((16, 16, 16), AnatomyOptions(num_labels=4), torch.Generator().manual_seed(0))
        >>> labels.shape, int(labels.min()) >= 1, int(labels.max()) <= 4
        (torch.Size([1, 16, 16, 16]), True, True)
    """
    count = options.num_labels
    # The fields and their warps are drawn on a half-resolution grid (8x fewer voxels; they vary over
    # shape_control_spacing >= 2 voxels anyway) and interpolated up before the arg-max, so outlines
    # stay smooth at full resolution.
    half = [max(2, (size + 1) // 2) for size in shape]
    spacing = max(2, options.shape_control_spacing // 2)
    grid = [max(2, -(-size // spacing) + 1) for size in half]
    fields = resize_image(torch.randn(count, 1, *grid, generator=generator), half)
    if options.shape_warp > 0:
        flows = _random_displacements(count, half, options.shape_warp / 2, spacing, generator)
        fields = warp(fields, flows, padding_mode="border")
    fields = resize_image(fields.transpose(0, 1), shape).transpose(0, 1)
    return fields[:, 0].argmax(dim=0, keepdim=True) + 1


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a ``(1, 1, D, H, W)`` image (sigma in voxels; 0 leaves it)."""
    if sigma <= 0.1:
        return image
    radius = max(1, math.ceil(2.5 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = kernel.numel()
        padding = [0, 0, 0]
        padding[axis] = radius
        image = F.conv3d(F.pad(image, [p for p in reversed(padding) for _ in (0, 1)], mode="replicate"), kernel.view(shape))
    return image


def synthesize_image(labels: torch.Tensor, means: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """An MR-like image of a label map: per-label intensity and texture, blur, bias, gamma, noise.

    Args:
        labels: ``(1, D, H, W)`` int64 labels ``1..len(means)``.
        means: ``(num_labels,)`` mean intensity of each label, in [0, 1].
        generator: the source of randomness.

    Returns:
        ``(1, D, H, W)`` float32 image, min-max normalised to [0, 1].
    """
    spread = _uniform(generator, 0.0, 0.05, means.shape)
    image = means[labels - 1] + spread[labels - 1] * torch.randn(labels.shape, generator=generator)
    image = _gaussian_blur(image[None], float(_uniform(generator, 0.3, 1.2)))[0]
    log_bias = resize_image(0.2 * torch.randn(1, 1, 4, 4, 4, generator=generator), labels.shape[1:])[0]
    image = (image * torch.exp(log_bias)).clamp_min(0)
    image = image / image.amax().clamp_min(1e-6)
    image = image.pow(torch.exp(0.25 * torch.randn((), generator=generator)))
    image = image + float(_uniform(generator, 0.0, 0.03)) * torch.randn(labels.shape, generator=generator)
    low, high = image.amin(), image.amax()
    return ((image - low) / (high - low).clamp_min(1e-6)).float()


@dataclass(frozen=True)
class SyntheticPair:
    """One synthetic pair.

    Attributes:
        moving, fixed: ``(1, D, H, W)`` images in [0, 1].
        moving_labels, fixed_labels: ``(1, D, H, W)`` int64 label maps.
        flow: ``(3, D, H, W)`` the true displacement in voxels, in the convention of
            :func:`~llamareg.spatial.functional.warp`: ``warp(moving, flow)`` lines up with ``fixed``.
        aligned: the two images share one deformation (``flow`` is zero).
    """

    moving: torch.Tensor
    fixed: torch.Tensor
    moving_labels: torch.Tensor
    fixed_labels: torch.Tensor
    flow: torch.Tensor
    aligned: bool


def synthesize_pair(shape: Sequence[int], options: AnatomyOptions, generator: torch.Generator) -> SyntheticPair:
    """A moving/fixed pair of one random label map under two random diffeomorphisms.

    With probability ``options.aligned_fraction`` both images share one deformation: the pair is
    aligned and differs only in bias field, gamma, blur and noise (and contrast, when not shared).

    The label map ``L`` gives ``fixed(x) = L(x + d2(x))`` and ``moving(y) = L(y + d1(y))``, with ``d1``
    and ``d2`` integrated from velocities ``v1`` and ``v2``. The displacement that carries fixed points
    to moving points is ``u(x) = d2(x) + e1(x + d2(x))``, where ``e1``, integrated from ``-v1``, inverts
    ``d1``; it is returned as the pair's true flow.

    Example:
        >>> pair = synthesize_pair((16, 16, 16), AnatomyOptions(num_labels=4), torch.Generator().manual_seed(1))
        >>> pair.moving.shape, pair.flow.shape, pair.fixed_labels.dtype
        (torch.Size([1, 16, 16, 16]), torch.Size([3, 16, 16, 16]), torch.int64)
    """
    shape = tuple(int(size) for size in shape)
    labels = random_label_map(shape, options, generator)
    aligned = bool(torch.rand((), generator=generator) < options.aligned_fraction)
    velocities = _random_velocities(1 if aligned else 2, shape, options.max_displacement, options.control_spacing, generator)
    deformations = _displacements(velocities, shape)
    warped = warp(labels[None].expand(deformations.shape[0], -1, -1, -1, -1), deformations, mode="nearest", padding_mode="border")
    moving_labels, fixed_labels = warped[0], warped[-1]
    if aligned:
        flow = torch.zeros(3, *shape)
    else:
        inverse = _displacements(-velocities[:1], shape)
        flow = compose(inverse, deformations[1:])[0]
    moving_means = torch.rand(options.num_labels, generator=generator)
    fixed_means = moving_means if options.shared_contrast else torch.rand(options.num_labels, generator=generator)
    return SyntheticPair(
        moving=synthesize_image(moving_labels, moving_means, generator),
        fixed=synthesize_image(fixed_labels, fixed_means, generator),
        moving_labels=moving_labels,
        fixed_labels=fixed_labels,
        flow=flow,
        aligned=aligned,
    )


class SyntheticPairs(Dataset):
    """``length`` synthetic pairs; item ``i`` is a pure function of ``(stream, seed, i)``.

    Nothing is cached or kept between items, so a resumed run (or a DataLoader worker) draws exactly
    the pairs an uninterrupted run would, and training and validation streams never share a pair.

    Args:
        shape: spatial shape ``(D, H, W)``.
        options: how pairs are drawn.
        stream: name of the seed stream (e.g. ``"synth-train"``, ``"synth-val"``).
        seed: seed within the stream.
        length: number of items.

    Example:
        >>> pairs = SyntheticPairs((16, 16, 16), AnatomyOptions(num_labels=4), "synth-val", seed=0, length=2)
        >>> sorted(pairs[0])
        ['fixed', 'fixed_labels', 'fixed_name', 'flow', 'moving', 'moving_labels', 'moving_name']
    """

    def __init__(self, shape: Sequence[int], options: AnatomyOptions, stream: str, seed: int, length: int) -> None:
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be a positive integer, got {length!r}")
        self.shape = tuple(int(size) for size in shape)
        self.options = options
        self.stream = stream
        self.seed = seed
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        if not -self.length <= index < self.length:
            raise IndexError(f"item {index} is out of range for {self.length} synthetic pairs")
        index %= self.length
        pair = synthesize_pair(self.shape, self.options, seeded_generator(self.stream, self.seed, index))
        name = f"{self.stream}-{self.seed}-{index:06d}"
        return {
            "moving": pair.moving,
            "fixed": pair.fixed,
            "moving_labels": pair.moving_labels,
            "fixed_labels": pair.fixed_labels,
            "flow": pair.flow,
            "moving_name": f"{name}-moving",
            "fixed_name": f"{name}-fixed" + ("-aligned" if pair.aligned else ""),
        }
