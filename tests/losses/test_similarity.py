from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from llamareg.losses.similarity import LocalNCCLoss, MSELoss, local_ncc, mse, similarity_loss


def reference_local_ncc(warped: np.ndarray, fixed: np.ndarray, window: int, eps: float) -> float:
    """Loop version over single-channel volumes: boxes clipped at the border, n-scaled statistics."""
    radius = window // 2
    values = []
    for index in itertools.product(*(range(n) for n in warped.shape)):
        box = tuple(slice(max(i - radius, 0), i + radius + 1) for i in index)
        w, f = warped[box].ravel(), fixed[box].ravel()
        n = w.size
        cross = np.sum(w * f) - n * w.mean() * f.mean()
        var_w = max(np.sum(w * w) - n * w.mean() ** 2, 0.0)
        var_f = max(np.sum(f * f) - n * f.mean() ** 2, 0.0)
        values.append(cross**2 / (var_w * var_f + eps))
    return -float(np.mean(values))


def test_mse_of_identical_images_is_zero_and_of_known_difference_is_its_square():
    image = torch.rand(2, 1, 4, 4, 4)
    assert mse(image, image).item() == 0.0
    assert mse(image, image + 0.5).item() == pytest.approx(0.25)
    assert MSELoss()(image, image + 2.0).item() == pytest.approx(4.0)


def test_ncc_of_identical_textured_images_is_minus_one():
    image = torch.rand(1, 1, 10, 10, 10, generator=torch.Generator().manual_seed(0))
    assert local_ncc(image, image).item() == pytest.approx(-1.0, abs=1e-4)


def test_ncc_is_invariant_to_affine_intensity_changes():
    generator = torch.Generator().manual_seed(1)
    fixed = torch.rand(2, 1, 8, 9, 10, generator=generator)
    warped = fixed + 0.5 * torch.rand(2, 1, 8, 9, 10, generator=generator)
    reference = local_ncc(warped, fixed, window=5)
    assert -0.95 < reference.item() < -0.2
    for scale, shift in [(3.0, 2.0), (0.5, -1.0), (-2.0, 0.3)]:
        torch.testing.assert_close(local_ncc(scale * warped + shift, fixed, window=5), reference, rtol=1e-4, atol=1e-4)


def test_ncc_of_independent_noise_is_near_zero():
    generator = torch.Generator().manual_seed(2)
    a = torch.rand(1, 1, 12, 12, 12, generator=generator)
    b = torch.rand(1, 1, 12, 12, 12, generator=generator)
    assert -0.05 < local_ncc(a, b, window=9).item() < 0


@pytest.mark.parametrize("window", [3, 5])
def test_ncc_matches_a_loop_reference(window):
    generator = torch.Generator().manual_seed(3)
    warped = torch.rand(1, 1, 5, 6, 4, generator=generator, dtype=torch.float64)
    fixed = torch.rand(1, 1, 5, 6, 4, generator=generator, dtype=torch.float64)
    expected = reference_local_ncc(warped[0, 0].numpy(), fixed[0, 0].numpy(), window, eps=1e-5)
    assert local_ncc(warped, fixed, window=window).item() == pytest.approx(expected, rel=1e-5)


def test_ncc_averages_channels_and_batch_items_independently():
    generator = torch.Generator().manual_seed(4)
    warped = torch.rand(2, 2, 6, 6, 6, generator=generator)
    fixed = torch.rand(2, 2, 6, 6, 6, generator=generator)
    per_volume = [local_ncc(warped[b : b + 1, c : c + 1], fixed[b : b + 1, c : c + 1], 3) for b in range(2) for c in range(2)]
    torch.testing.assert_close(local_ncc(warped, fixed, 3), torch.stack(per_volume).mean())


def test_ncc_is_differentiable():
    fixed = torch.rand(1, 1, 6, 6, 6)
    warped = torch.rand(1, 1, 6, 6, 6, requires_grad=True)
    LocalNCCLoss(window=3)(warped, fixed).backward()
    assert torch.isfinite(warped.grad).all() and warped.grad.abs().sum() > 0


def test_ncc_of_flat_images_is_zero_not_nan():
    flat = torch.full((1, 1, 5, 5, 5), 0.7)
    value = local_ncc(flat, flat)
    assert torch.isfinite(value) and abs(value.item()) < 1e-4


def test_similarity_loss_factory_builds_modules_and_names_allowed_choices():
    assert isinstance(similarity_loss("mse"), MSELoss)
    ncc = similarity_loss("ncc", window=5)
    assert isinstance(ncc, LocalNCCLoss) and ncc.window == 5
    with pytest.raises(ValueError, match="'mse', 'ncc'"):
        similarity_loss("mi")


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="same shape"):
        mse(torch.zeros(1, 1, 2, 2, 2), torch.zeros(1, 1, 2, 2, 3))
    with pytest.raises(ValueError, match="odd"):
        local_ncc(torch.zeros(1, 1, 4, 4, 4), torch.zeros(1, 1, 4, 4, 4), window=4)
    with pytest.raises(ValueError, match="odd"):
        LocalNCCLoss(window=0)
