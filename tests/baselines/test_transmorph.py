"""TransMorph: stride from the number of stages, window checks, windows that do not tile the grid."""

import pytest
import torch

from llamareg.baselines import CPU_SCALING, TransMorph


def test_stride_follows_patch_size_and_stage_count():
    assert TransMorph((64, 64, 64), embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=2).stride == 32
    assert TransMorph((32, 32, 32), **CPU_SCALING["transmorph"]).stride == 16
    with pytest.raises(ValueError, match="divisible by 32"):
        TransMorph((48, 64, 48), embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=2)


def test_window_is_checked_against_the_first_token_grid():
    with pytest.raises(ValueError, match="window_size .* exceeds the first stage's token grid"):
        TransMorph((32, 32, 32), **{**CPU_SCALING["transmorph"], "window_size": (3, 9, 3)})
    with pytest.raises(ValueError, match="window_size"):
        TransMorph((32, 32, 32), **{**CPU_SCALING["transmorph"], "window_size": (3, 4)})


def test_windows_that_do_not_tile_the_grid_are_padded_and_masked():
    # 32x48x32 with window 3x4x3: first grid 8x12x8 is padded to 9x12x9; 1/16 grid 2x3x2 shrinks the window.
    torch.manual_seed(0)
    model = TransMorph((32, 48, 32), **CPU_SCALING["transmorph"])
    moving, fixed = torch.rand(1, 1, 32, 48, 32), torch.rand(1, 1, 32, 48, 32)
    out = model(moving, fixed)
    out["flows"][0].sum().backward()
    assert torch.isfinite(model.encoder.stages[0].blocks[1].attn.relative_position_bias_table.grad).all()


def test_published_configuration_layout():
    model = TransMorph((160, 192, 224))
    assert model.stride == 32 and model.encoder.channels == [96, 192, 384, 768]
    assert [len(stage.blocks) for stage in model.encoder.stages] == [2, 2, 4, 2]
    table = model.encoder.stages[0].blocks[0].attn.relative_position_bias_table
    assert table.shape == (9 * 11 * 13, 4)
    with pytest.raises(ValueError, match="embed_dim"):
        TransMorph((32, 32, 32), embed_dim=1, depths=(1,), num_heads=(1,), window_size=2)
