import importlib.util

import pytest
import torch

from llamareg.data import mni152
from llamareg.data.mni152 import LABEL_NAMES, load_mni152


@pytest.fixture(scope="module")
def template():
    return load_mni152()


def test_default_template_geometry_and_intensities(template):
    assert template.shape == (64, 80, 64)
    assert template.image.dtype == torch.float32 and template.labels.dtype == torch.int64
    assert template.image.min() == 0 and template.image.max() == 1
    assert torch.equal(template.affine.diagonal()[:3], torch.full((3,), 2.5, dtype=torch.float64))
    # Percentile clipping saturates only the brightest ~0.5 % of the head.
    head = template.image > 0
    assert 0.001 < (template.image[head] == 1).float().mean() < 0.02
    # Background outside the brain stays dark.
    assert template.image[template.labels == 0].mean() < 0.3


def test_labels_are_plausible_tissue_maps(template):
    counts = torch.bincount(template.labels.flatten(), minlength=3)
    assert set(LABEL_NAMES) == {1, 2} and len(counts) == 3
    # At 2.5 mm a voxel is 15.6 ul. The (large) MNI brain holds about 1.7 l, more grey than white matter.
    grey_ml, white_ml = (counts[1:] * 2.5**3 / 1000).tolist()
    assert 1400 < grey_ml + white_ml < 2000
    assert 450 < white_ml < grey_ml < 1300
    # White matter is brighter than grey matter on T1.
    image = template.image
    assert image[template.labels == 2].mean() > image[template.labels == 1].mean() + 0.1


def test_brain_is_centred_and_fits(template):
    brain = (template.labels[0] > 0).nonzero()
    low, high = brain.min(dim=0).values, brain.max(dim=0).values
    sizes = torch.tensor(template.shape)
    assert (low >= 1).all() and (high <= sizes - 2).all()
    assert ((low - (sizes - 1 - high)).abs() <= 2).all()


def test_other_shape_and_spacing():
    volume = load_mni152((32, 48, 32), spacing_mm=5.0)
    assert volume.shape == (32, 48, 32)
    assert volume.affine[0, 0] == 5.0
    assert (torch.bincount(volume.labels.flatten(), minlength=3) > 0).all()


@pytest.mark.parametrize("shape", [(64, 80, 60), (64, 80), (0, 16, 16)])
def test_shape_not_divisible_by_16_is_refused(shape):
    with pytest.raises(ValueError, match="divisible by 16"):
        load_mni152(shape)


def test_missing_nilearn_names_the_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(mni152.importlib.util, "find_spec", lambda name, *args: None if name == "nilearn" else real_find_spec(name, *args))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps nilearn"):
        load_mni152()
