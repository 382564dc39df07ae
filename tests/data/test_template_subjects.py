import pytest
import torch

from llamareg.data.template_subjects import build_embedded_volumes
from llamareg.data.pair_datasets import EvaluationPairs, consecutive_pairs
from llamareg.metrics.overlap import dice_per_label


@pytest.fixture(scope="module")
def default_val():
    """Default geometry and deformation; few training subjects to keep the test fast."""
    return build_embedded_volumes(num_train=2)


def test_default_validation_pairs_leave_room_to_register(default_val):
    train, val = default_val
    assert len(train) == 2 and len(val) == 8
    assert all(volume.shape == (64, 80, 64) for volume in train + val)
    pairs = EvaluationPairs(val, consecutive_pairs(len(val)))
    dice = torch.cat([dice_per_label(p["moving_labels"][None], p["fixed_labels"][None], [1, 2]) for p in pairs])
    assert 0.55 < dice.mean() < 0.72
    assert dice.min() > 0.45 and dice.max() < 0.85


def test_train_and_validation_subjects_differ(default_val):
    train, val = default_val
    assert {v.name for v in train}.isdisjoint({v.name for v in val})
    for held_out in val:
        for seen in train:
            assert (held_out.labels != seen.labels).float().mean() > 0.05


def test_subjects_are_reproducible_and_prefix_stable():
    small = dict(shape=(32, 48, 32), spacing_mm=5.0, max_displacement=3.0, control_spacing=8)
    train, val = build_embedded_volumes(num_train=2, num_val=2, seed=0, **small)
    more_train, more_val = build_embedded_volumes(num_train=3, num_val=2, seed=0, **small)
    other_train, _ = build_embedded_volumes(num_train=2, num_val=2, seed=1, **small)
    assert [v.name for v in more_train] == ["mni152-train-000", "mni152-train-001", "mni152-train-002"]
    for a, b in zip(train + val, more_train[:2] + more_val):
        assert torch.equal(a.image, b.image) and torch.equal(a.labels, b.labels)
    assert not torch.equal(train[0].image, other_train[0].image)


@pytest.mark.parametrize("kwargs", [{"num_train": 1}, {"num_val": 0}, {"seed": 1.5}])
def test_bad_options_are_refused(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        build_embedded_volumes(**kwargs)
