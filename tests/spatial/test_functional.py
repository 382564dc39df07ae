from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llamareg.spatial.functional import (
    compose,
    identity_grid,
    integrate_velocity,
    jacobian_determinant,
    resize_flow,
    resize_image,
    warp,
)


def constant_flow(shape, vector, batch=1, dtype=torch.float32):
    return torch.tensor(vector, dtype=dtype).view(1, 3, 1, 1, 1).expand(batch, 3, *shape).clone()


def smooth_random_flow(shape, amplitude, seed):
    coarse = torch.randn(1, 3, 4, 4, 4, generator=torch.Generator().manual_seed(seed))
    flow = F.interpolate(coarse, size=shape, mode="trilinear", align_corners=False)
    return flow / flow.abs().max() * amplitude


def gaussian_blob(shape, centre, sigma):
    grid = identity_grid(shape, dtype=torch.float64)
    offset = grid - torch.tensor(centre, dtype=torch.float64).view(1, 3, 1, 1, 1)
    return torch.exp(-(offset**2).sum(dim=1, keepdim=True) / (2 * sigma**2)).float()


def test_identity_grid_holds_voxel_indices_per_axis():
    grid = identity_grid((2, 3, 4))
    assert grid.shape == (1, 3, 2, 3, 4)
    assert grid[0, :, 1, 2, 3].tolist() == [1.0, 2.0, 3.0]
    assert grid[0, 2, 0, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert identity_grid((2, 2, 2), dtype=torch.float64).dtype == torch.float64


def test_zero_flow_is_identity_for_bilinear_and_nearest():
    image = torch.rand(2, 2, 5, 6, 7, dtype=torch.float64)
    labels = torch.randint(0, 40, (2, 1, 5, 6, 7))
    zero64 = torch.zeros(2, 3, 5, 6, 7, dtype=torch.float64)
    torch.testing.assert_close(warp(image, zero64), image, rtol=0, atol=1e-12)
    warped_labels = warp(labels, torch.zeros(2, 3, 5, 6, 7), mode="nearest")
    assert warped_labels.dtype == labels.dtype
    assert torch.equal(warped_labels, labels)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_integer_translation_is_recovered_exactly(axis):
    image = torch.rand(1, 1, 6, 7, 8, dtype=torch.float64)
    vector = [0.0, 0.0, 0.0]
    vector[axis] = 2.0
    flow = constant_flow((6, 7, 8), vector, dtype=torch.float64)
    warped = warp(image, flow)
    size = image.shape[2 + axis]
    # warped(x) = image(x + 2 e_axis) wherever x + 2 stays inside the volume.
    expected = image.narrow(2 + axis, 2, size - 2)
    torch.testing.assert_close(warped.narrow(2 + axis, 0, size - 2), expected, rtol=0, atol=1e-12)
    labels = (image * 10).long()
    warped_labels = warp(labels, flow.float(), mode="nearest")
    assert torch.equal(warped_labels.narrow(2 + axis, 0, size - 2), labels.narrow(2 + axis, 2, size - 2))


def test_border_padding_repeats_edge_values():
    image = torch.arange(5.0).view(1, 1, 1, 1, 5)
    flow = constant_flow((1, 1, 5), [0.0, 0.0, 1.0])
    assert warp(image, flow)[0, 0, 0, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 4.0]
    assert warp(image, flow, padding_mode="zeros")[0, 0, 0, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 0.0]


def test_half_voxel_shift_interpolates_linearly():
    image = torch.arange(5.0).view(1, 1, 1, 1, 5) ** 2
    flow = constant_flow((1, 1, 5), [0.0, 0.0, 0.5])
    torch.testing.assert_close(warp(image, flow)[0, 0, 0, 0, :4], torch.tensor([0.5, 2.5, 6.5, 12.5]))


def test_translation_of_smooth_blob_is_found_by_minimising_mse():
    shape = (16, 16, 16)
    moving = gaussian_blob(shape, (8.0, 7.0, 9.0), sigma=2.5)
    fixed = gaussian_blob(shape, (7.0, 8.5, 7.0), sigma=2.5)
    # warped(x) = moving(x + u) is centred at moving_centre - u, so the answer is u = (1, -1.5, 2).
    translation = torch.zeros(3, requires_grad=True)
    optimiser = torch.optim.Adam([translation], lr=0.1)
    for _ in range(150):
        optimiser.zero_grad()
        flow = translation.view(1, 3, 1, 1, 1).expand(1, 3, *shape)
        loss = torch.mean((warp(moving, flow) - fixed) ** 2)
        loss.backward()
        optimiser.step()
    torch.testing.assert_close(translation.detach(), torch.tensor([1.0, -1.5, 2.0]), rtol=0, atol=0.05)


def test_warp_rejects_bad_arguments():
    image = torch.rand(1, 1, 4, 4, 4)
    flow = torch.zeros(1, 3, 4, 4, 4)
    with pytest.raises(ValueError, match="flow must have shape"):
        warp(image, torch.zeros(1, 2, 4, 4, 4))
    with pytest.raises(ValueError, match="spatial shape"):
        warp(image, torch.zeros(1, 3, 4, 4, 5))
    with pytest.raises(ValueError, match="mode must be one of"):
        warp(image, flow, mode="bicubic")
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        warp(image, flow, padding_mode="wrap")
    with pytest.raises(ValueError, match="mode='nearest'"):
        warp(image.long(), flow)


def test_compose_with_zero_is_identity():
    flow = smooth_random_flow((8, 8, 8), amplitude=1.5, seed=1)
    zero = torch.zeros_like(flow)
    torch.testing.assert_close(compose(zero, flow), flow)
    torch.testing.assert_close(compose(flow, zero), flow, rtol=0, atol=1e-5)


def test_compose_of_translations_is_their_sum():
    outer = constant_flow((6, 6, 6), [1.0, -2.0, 0.5])
    inner = constant_flow((6, 6, 6), [0.25, 1.0, -1.5])
    torch.testing.assert_close(compose(outer, inner), constant_flow((6, 6, 6), [1.25, -1.0, -1.0]))


def test_compose_applies_inner_first_then_outer():
    # Outer shifts along W by 1 where D < 4, elsewhere 0; inner shifts along D by 2. At x, the inner map
    # moves to x + 2 e_D, so the outer shift applies exactly when D + 2 < 4.
    outer = torch.zeros(1, 3, 8, 8, 8)
    outer[:, 2, :4] = 1.0
    inner = constant_flow((8, 8, 8), [2.0, 0.0, 0.0])
    composed = compose(outer, inner)
    torch.testing.assert_close(composed[:, 0], torch.full((1, 8, 8, 8), 2.0))
    torch.testing.assert_close(composed[:, 2, :2], torch.ones(1, 2, 8, 8))
    torch.testing.assert_close(composed[:, 2, 2:], torch.zeros(1, 6, 8, 8))


def test_integrate_constant_velocity_gives_that_translation():
    velocity = constant_flow((6, 7, 8), [1.5, -0.75, 3.0])
    torch.testing.assert_close(integrate_velocity(velocity, steps=7), velocity)
    assert torch.equal(integrate_velocity(velocity, steps=0), velocity)


def test_integrated_smooth_velocity_does_not_fold_where_the_raw_field_does():
    velocity = smooth_random_flow((16, 16, 16), amplitude=4.0, seed=0)
    assert (jacobian_determinant(velocity) <= 0).any(), "the raw field should fold for this test to mean anything"
    displacement = integrate_velocity(velocity, steps=7)
    assert jacobian_determinant(displacement).min() > 0.1


def test_integrate_velocity_rejects_negative_steps():
    with pytest.raises(ValueError, match="steps"):
        integrate_velocity(torch.zeros(1, 3, 2, 2, 2), steps=-1)


def test_resize_flow_doubles_magnitude_when_doubling_size():
    flow = torch.ones(1, 3, 4, 5, 6)
    torch.testing.assert_close(resize_flow(flow, (8, 10, 12)), torch.full((1, 3, 8, 10, 12), 2.0))


def test_resize_flow_scales_each_component_by_its_own_axis():
    flow = torch.ones(2, 3, 4, 4, 4)
    resized = resize_flow(flow, (8, 4, 2))
    assert resized.shape == (2, 3, 8, 4, 2)
    assert resized[:, 0].unique().tolist() == [2.0]
    assert resized[:, 1].unique().tolist() == [1.0]
    assert resized[:, 2].unique().tolist() == [0.5]


def test_resize_flow_keeps_the_physical_transform_of_a_linear_field():
    # Physical displacement U(p) = 0.1 p + 0.3 along W, with voxel size h at the coarse grid and
    # voxel centres at (i + 0.5) h (the align_corners=False geometry).
    def sampled(size, voxel_size):
        centres = (torch.arange(size, dtype=torch.float64) + 0.5) * voxel_size
        flow = torch.zeros(1, 3, size, size, size, dtype=torch.float64)
        flow[:, 2] = ((0.1 * centres + 0.3) / voxel_size).view(1, 1, size)
        return flow

    upsampled = resize_flow(sampled(6, 1.0), (12, 12, 12))
    expected = sampled(12, 0.5)
    # Trilinear interpolation is exact for a linear field away from the clamped border.
    torch.testing.assert_close(upsampled[..., 1:-1], expected[..., 1:-1])


def test_resize_image_halving_averages_blocks_and_keeps_label_dtype():
    image = torch.rand(1, 2, 4, 6, 8)
    torch.testing.assert_close(resize_image(image, (2, 3, 4)), F.avg_pool3d(image, 2))
    labels = torch.arange(8).view(1, 1, 1, 1, 8).expand(1, 1, 2, 2, 8)
    halved = resize_image(labels, (1, 1, 4), mode="nearest")
    assert halved.dtype == labels.dtype
    # nearest-exact follows voxel centres: new voxel j covers old voxels 2j and 2j + 1 and takes 2j + 1.
    assert halved[0, 0, 0, 0].tolist() == [1, 3, 5, 7]
    with pytest.raises(ValueError, match="mode='nearest'"):
        resize_image(labels, (1, 1, 4))


def test_jacobian_of_zero_flow_is_one():
    determinant = jacobian_determinant(torch.zeros(2, 3, 5, 6, 7))
    assert determinant.shape == (2, 5, 6, 7)
    assert determinant.unique().tolist() == [1.0]


def test_jacobian_of_linear_flow_along_one_axis_is_one_plus_slope():
    flow = torch.zeros(1, 3, 6, 7, 8, dtype=torch.float64)
    flow[:, 1] = 0.3 * identity_grid((6, 7, 8), dtype=torch.float64)[:, 1]
    determinant = jacobian_determinant(flow)
    torch.testing.assert_close(determinant[:, 1:-1, 1:-1, 1:-1], torch.full((1, 4, 5, 6), 1.3, dtype=torch.float64))


def test_jacobian_of_general_linear_flow_is_det_of_identity_plus_matrix():
    # u(x) = A x with u_i = sum_j A[i, j] x_j: checks that channel i pairs with axis i.
    matrix = torch.tensor([[0.2, -0.5, 0.1], [0.4, -0.3, 0.0], [0.7, 0.2, 0.5]], dtype=torch.float64)
    grid = identity_grid((5, 5, 5), dtype=torch.float64)
    flow = torch.einsum("ij,bjdhw->bidhw", matrix, grid)
    expected = torch.linalg.det(torch.eye(3, dtype=torch.float64) + matrix)
    torch.testing.assert_close(jacobian_determinant(flow), expected.expand(1, 5, 5, 5))
    # The matrix is chosen so that pairing channels with reversed axes would give another value.
    reversed_axes = torch.linalg.det(torch.eye(3, dtype=torch.float64) + matrix.flip(1))
    assert abs(reversed_axes - expected) > 0.1


def test_jacobian_rejects_single_voxel_axes():
    with pytest.raises(ValueError, match=">= 2"):
        jacobian_determinant(torch.zeros(1, 3, 1, 4, 4))


def test_half_precision_flow_keeps_coordinates_in_float32():
    # bfloat16 cannot represent 200 + 0.5; the warp must still land half-way between voxels 200 and 201.
    image = torch.arange(256.0).view(1, 1, 1, 1, 256)
    flow = torch.zeros(1, 3, 1, 1, 256, dtype=torch.bfloat16)
    flow[..., 200] = 0.5
    warped = warp(image, flow)
    assert warped.dtype == torch.float32
    assert warped[0, 0, 0, 0, 200].item() == pytest.approx(200.5, abs=1e-3)
    assert jacobian_determinant(torch.zeros(1, 3, 2, 2, 2, dtype=torch.float16)).dtype == torch.float32
