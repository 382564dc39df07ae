import pytest
import torch

from llamareg.data.synth_anatomy import AnatomyOptions, SyntheticPairs, random_label_map, synthesize_pair
from llamareg.data.synthetic import seeded_generator

SHAPE = (24, 32, 24)
OPTIONS = AnatomyOptions(num_labels=8, shape_control_spacing=6, max_displacement=4.0, control_spacing=8)


def test_pair_is_a_pure_function_of_its_seed():
    first = SyntheticPairs(SHAPE, OPTIONS, "synth-train-0", seed=3, length=10)[7]
    again = SyntheticPairs(SHAPE, OPTIONS, "synth-train-0", seed=3, length=100)[7]
    other = SyntheticPairs(SHAPE, OPTIONS, "synth-val", seed=3, length=10)[7]
    for key in ("moving", "fixed", "moving_labels", "fixed_labels"):
        assert torch.equal(first[key], again[key])
    assert not torch.equal(first["moving"], other["moving"])


def test_pairs_have_valid_images_and_labels():
    pair = synthesize_pair(SHAPE, OPTIONS, seeded_generator("t", 0))
    for image in (pair.moving, pair.fixed):
        assert image.shape == (1, *SHAPE) and image.dtype == torch.float32
        assert image.min() >= 0 and image.max() <= 1 and image.std() > 0.05
    for labels in (pair.moving_labels, pair.fixed_labels):
        assert labels.dtype == torch.int64 and labels.min() >= 1 and labels.max() <= OPTIONS.num_labels


def test_label_map_has_many_shapes():
    labels = random_label_map(SHAPE, OPTIONS, seeded_generator("shapes", 1))
    assert len(torch.unique(labels)) >= OPTIONS.num_labels - 1


@pytest.mark.parametrize("fraction", [0.0, 0.3, 1.0])
def test_aligned_pairs_come_at_the_configured_rate(fraction):
    options = AnatomyOptions(num_labels=4, shape_control_spacing=4, max_displacement=3.0, control_spacing=4, aligned_fraction=fraction)
    pairs = [synthesize_pair((8, 8, 8), options, seeded_generator("rate", index)) for index in range(200)]
    aligned = [pair for pair in pairs if pair.aligned]
    # Binomial(200, 0.3) lies within 0.3 +- 0.1 with probability > 0.998.
    assert abs(len(aligned) / len(pairs) - fraction) <= 0.1
    for pair in pairs:
        same = torch.equal(pair.moving_labels, pair.fixed_labels)
        assert same == pair.aligned or (same and not pair.aligned and len(torch.unique(pair.moving_labels)) == 1)
    # Aligned images differ by contrast and noise only, never by being the same image.
    assert all(not torch.equal(pair.moving, pair.fixed) for pair in aligned)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="synth_aligned_fraction"):
        AnatomyOptions(aligned_fraction=1.5)
    with pytest.raises(ValueError, match="synth_labels"):
        AnatomyOptions(num_labels=1)


def test_true_flow_lines_the_moving_labels_up_with_the_fixed_ones():
    from llamareg.metrics.overlap import dice_per_label
    from llamareg.spatial.functional import warp

    options = AnatomyOptions(num_labels=8, shape_control_spacing=8, max_displacement=5.0, control_spacing=8, aligned_fraction=0.0)
    pair = synthesize_pair(SHAPE, options, seeded_generator("flow", 2))
    labels = list(range(1, 9))
    before = dice_per_label(pair.moving_labels[None], pair.fixed_labels[None], labels).nanmean()
    after = dice_per_label(warp(pair.moving_labels[None], pair.flow[None], mode="nearest"), pair.fixed_labels[None], labels).nanmean()
    assert pair.flow.abs().max() > 1.0
    assert before < 0.85 and after > 0.88 and after > before + 0.05
