import pytest
import torch

from llamareg.data.synthetic import random_intensity, random_smooth_displacement, seeded_generator, synthesize_subject
from llamareg.data.volume import Volume
from llamareg.spatial.functional import jacobian_determinant, warp

SHAPE = (32, 40, 32)


def test_seeded_generator_streams_are_distinct_and_reproducible():
    draw = lambda *keys: torch.rand(4, generator=seeded_generator(*keys))  # noqa: E731
    assert torch.equal(draw(0, "train", 1), draw(0, "train", 1))
    # torch keeps only 32 bits of a seed: keys that differ by 2**32 must still differ.
    assert not torch.equal(draw(0), draw(2**32))
    assert not torch.equal(draw(0, "train", 1), draw(0, "val", 1))


@pytest.mark.parametrize("max_displacement, control_spacing", [(3.0, 8), (8.0, 16)])
def test_displacement_is_smooth_diffeomorphic_and_bounded(max_displacement, control_spacing):
    flow = random_smooth_displacement(SHAPE, max_displacement, control_spacing, torch.Generator().manual_seed(1))
    assert flow.shape == (1, 3, *SHAPE) and flow.dtype == torch.float32
    assert (jacobian_determinant(flow) > 0).all()
    longest = flow.norm(dim=1).max().item()
    assert 0.75 * max_displacement < longest <= 1.05 * max_displacement
    # Smooth: neighbouring voxels move alike. The mean change between neighbours is a small fraction
    # of the mean displacement (about 2 / control_spacing), where independent noise gives about 1.4.
    roughness = max((flow.diff(dim=axis).abs().mean() / flow.abs().mean()).item() for axis in (2, 3, 4))
    assert roughness < 2.5 / control_spacing


def test_displacement_seeds_and_zero_amplitude():
    make = lambda seed: random_smooth_displacement(SHAPE, 4.0, 8, torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(make(3), make(3))
    assert not torch.allclose(make(3), make(4))
    zero = random_smooth_displacement(SHAPE, 0.0, 8, torch.Generator().manual_seed(0))
    assert torch.equal(zero, torch.zeros_like(zero))


@pytest.mark.parametrize("kwargs", [{"max_displacement": -1.0}, {"control_spacing": 1}, {"shape": (8, 8)}])
def test_displacement_rejects_bad_options(kwargs):
    arguments = {"shape": SHAPE, "max_displacement": 2.0, "control_spacing": 8, **kwargs}
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        random_smooth_displacement(**arguments)


def test_random_intensity_changes_contrast_within_range():
    image = torch.linspace(0, 1, 16 * 16 * 16).view(1, 16, 16, 16)
    out = random_intensity(image, torch.Generator().manual_seed(0))
    assert out.shape == image.shape and out.dtype == image.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert (out - image).abs().mean() > 0.01
    # Still the same anatomy: strongly correlated with the input.
    assert torch.corrcoef(torch.stack([out.flatten(), image.flatten()]))[0, 1] > 0.9
    assert torch.equal(out, random_intensity(image, torch.Generator().manual_seed(0)))
    untouched = random_intensity(image, torch.Generator().manual_seed(0), 0.0, 0.0, 0.0)
    assert torch.allclose(untouched, image)


@pytest.fixture(scope="module")
def template():
    labels = torch.zeros(1, *SHAPE, dtype=torch.long)
    labels[:, 8:24, 10:30, 8:24] = 1
    labels[:, 12:20, 15:25, 12:20] = 2
    image = labels.float() / 2 * 0.8 + 0.1
    return Volume(image, labels, torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0], dtype=torch.float64)), "blocks")


def test_synthesized_subject_is_the_template_warped_by_one_field(template):
    subject = synthesize_subject(template, torch.Generator().manual_seed(5), "s5", 3.0, 8, intensity=False)
    flow = random_smooth_displacement(SHAPE, 3.0, 8, torch.Generator().manual_seed(5))
    assert torch.allclose(subject.image, warp(template.image[None], flow)[0])
    assert torch.equal(subject.labels, warp(template.labels[None], flow, mode="nearest")[0])
    assert not torch.equal(subject.labels, template.labels)
    assert subject.name == "s5" and torch.equal(subject.affine, template.affine)
    assert set(subject.labels.unique().tolist()) == {0, 1, 2}


def test_synthesized_subject_is_reproducible_per_seed(template):
    make = lambda seed: synthesize_subject(template, torch.Generator().manual_seed(seed), max_displacement=3.0)  # noqa: E731
    first, again, other = make(1), make(1), make(2)
    assert torch.equal(first.image, again.image) and torch.equal(first.labels, again.labels)
    assert not torch.equal(first.labels, other.labels)
    assert first.name == "blocks-synthetic"
    # Labels still mark the bright structure after intensity changes.
    assert first.image[first.labels == 2].mean() > first.image[first.labels == 0].mean() + 0.3
