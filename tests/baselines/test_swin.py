"""3D Swin pieces: window partition, shifted-window attention mask, relative position bias, blocks, encoder."""

import itertools

import pytest
import torch

from llamareg.baselines.swin import (
    CrossAttentionStage,
    PatchMerging,
    SwinBlock,
    SwinEncoder,
    relative_position_index,
    window_attention_mask,
    window_layout,
    window_partition,
    window_reverse,
)

# (grid, configured window, shifted): exact tiling, padding on some axes, window larger than the grid.
LAYOUTS = [
    ((4, 4, 4), (2, 2, 2), True),
    ((6, 4, 5), (3, 2, 2), True),
    ((5, 7, 3), (2, 3, 4), True),
    ((5, 7, 3), (2, 3, 4), False),
    ((4, 1, 6), (2, 2, 3), True),
]


def shifted_layout(grid, window, shift):
    """Original coordinates (or None for padding) of each token of each window, built independently of
    the module: pad, roll and read windows off by explicit index arithmetic."""
    padded = [-(-g // w) * w for g, w in zip(grid, window)]
    counts = [p // w for p, w in zip(padded, window)]
    windows = []
    for index in itertools.product(*[range(c) for c in counts]):
        tokens = []
        for offset in itertools.product(*[range(w) for w in window]):
            position = [i * w + o for i, w, o in zip(index, window, offset)]  # in the shifted frame
            original = [(p + s) % size for p, s, size in zip(position, shift, padded)]
            real = all(o < g for o, g in zip(original, grid))
            tokens.append((tuple(position), tuple(original) if real else None))
        windows.append(tokens)
    return windows


def expected_mask(grid, window, shift):
    """Token pairs of a window that are neighbours in the unshifted volume (no wrap between them), both real."""
    rows = []
    for tokens in shifted_layout(grid, window, shift):
        rows.append(
            [
                [a is not None and b is not None and all(x - y == u - v for x, y, u, v in zip(a, b, p, q)) for (q, b) in tokens]
                for (p, a) in tokens
            ]
        )
    return torch.tensor(rows)


def test_partition_and_reverse_round_trip():
    x = torch.randn(2, 4, 6, 4, 3)
    windows = window_partition(x, (2, 3, 2))
    assert windows.shape == (2, 8, 12, 3)
    assert torch.equal(windows[0, 0].view(2, 3, 2, 3), x[0, :2, :3, :2])  # first window = first block, in order
    assert torch.equal(window_reverse(windows, (2, 3, 2), (4, 6, 4)), x)


def test_window_layout_shrinks_windows_to_small_grids_and_pads_the_rest():
    assert window_layout((40, 48, 56), (5, 6, 7), True) == ((5, 6, 7), (2, 3, 3), (40, 48, 56))
    assert window_layout((12, 16, 12), (5, 6, 7), False) == ((5, 6, 7), (0, 0, 0), (15, 18, 14))
    assert window_layout((2, 3, 8), (5, 6, 7), True) == ((2, 3, 7), (0, 0, 3), (2, 3, 14))


@pytest.mark.parametrize("grid,configured,shifted", LAYOUTS)
def test_attention_mask_keeps_shifted_tokens_within_their_region(grid, configured, shifted):
    window, shift, _ = window_layout(grid, configured, shifted)
    mask = window_attention_mask(grid, window, shift)
    expected = expected_mask(grid, window, shift)
    if mask is None:  # no shift, no padding: every pair in a window may attend
        assert expected.all()
        return
    real = torch.tensor([[original is not None for _, original in tokens] for tokens in shifted_layout(grid, window, shift)])
    # Rows of real tokens: exactly the unshifted neighbours. Padding rows only ever see padding.
    assert torch.equal(mask & real[:, :, None], expected)
    assert not (mask & ~real[:, :, None] & real[:, None, :]).any()
    assert mask.diagonal(dim1=1, dim2=2).all()  # every token sees itself: no empty softmax rows


def test_attention_mask_on_a_tiny_shifted_grid():
    # 4x4x1 grid, 2x2x1 windows shifted by (1, 1, 0): the interior window is one region, the corner
    # window holds four tokens wrapped from four corners of the volume, each alone.
    mask = window_attention_mask((4, 4, 1), (2, 2, 1), (1, 1, 0))
    assert mask.shape == (4, 4, 4)
    assert mask[0].all()
    assert torch.equal(mask[3], torch.eye(4, dtype=torch.bool))
    assert mask[1].sum() == 8 and mask[2].sum() == 8  # two regions of two tokens each
    assert window_attention_mask((4, 4, 2), (2, 2, 2), (0, 0, 0)) is None


def test_relative_position_index_encodes_offsets_in_the_table_radix():
    table = (3, 4, 2)
    span = [2 * t - 1 for t in table]
    for window in [(3, 4, 2), (2, 3, 1)]:
        index = relative_position_index(window, table)
        coords = list(itertools.product(*[range(w) for w in window]))
        for i, a in enumerate(coords):
            for j, b in enumerate(coords):
                d = [x - y + t - 1 for x, y, t in zip(a, b, table)]
                assert index[i, j] == (d[0] * span[1] + d[1]) * span[2] + d[2]
    assert relative_position_index(table, table).max() == span[0] * span[1] * span[2] - 1
    with pytest.raises(ValueError, match="exceeds"):
        relative_position_index((4, 4, 2), table)


def changed_tokens(block, x, token, context=None, perturb_context=False):
    with torch.no_grad():
        before = block(x, context)
        source = context if perturb_context else x
        perturbed = source.clone()
        perturbed[(0, *token)] += torch.linspace(-1.0, 2.0, perturbed.shape[-1])  # not constant: LayerNorm would remove it
        after = block(x, perturbed) if perturb_context else block(perturbed, context)
    return {tuple(i) for i in ((after - before).abs().amax(-1)[0] > 0).nonzero().tolist()}


def attending_tokens(grid, configured, shifted, token):
    """Tokens whose attention may see ``token``: same window and region, from the independent layout."""
    window, shift, _ = window_layout(grid, configured, shifted)
    for tokens in shifted_layout(grid, window, shift):
        originals = [o for _, o in tokens]
        if token in originals:
            positions = dict((o, p) for p, o in tokens if o is not None)
            p = positions[token]
            return {o for o, q in positions.items() if all(a - b == u - v for a, b, u, v in zip(o, token, q, p))}
    raise AssertionError("token not found")


@pytest.mark.parametrize("grid,configured,shifted", LAYOUTS)
def test_a_swin_block_mixes_tokens_only_within_their_window_region(grid, configured, shifted):
    torch.manual_seed(0)
    block = SwinBlock(8, 2, configured, shifted=shifted)
    x = torch.randn(1, *grid, 8)
    for token in [(0, 0, 0), tuple(g - 1 for g in grid), tuple(g // 2 for g in grid)]:
        assert changed_tokens(block, x, token) == attending_tokens(grid, configured, shifted, token)


def test_cross_attention_queries_come_from_the_context_stream():
    torch.manual_seed(0)
    grid, configured = (4, 6, 5), (2, 3, 2)
    block = SwinBlock(8, 2, configured, shifted=True)
    x, context = torch.randn(1, *grid, 8), torch.randn(1, *grid, 8)
    token = (3, 5, 4)
    region = attending_tokens(grid, configured, True, token)
    # A context token is a query: changing it changes that token's output only.
    assert changed_tokens(block, x, token, context, perturb_context=True) == {token}
    # A token of this stream is a key/value: it changes the outputs of its whole region.
    assert changed_tokens(block, x, token, context) == region
    stage = CrossAttentionStage(8, depth=2, heads=2, window=configured)
    features, other, another = torch.randn(1, 8, *grid), torch.randn(1, 8, *grid), torch.randn(1, 8, *grid)
    with torch.no_grad():
        assert (stage(features, other) - stage(features, another)).abs().max() > 1e-6  # small at init (weights std 0.02)


def test_patch_merging_halves_the_grid_and_doubles_the_width():
    merge = PatchMerging(4)
    assert merge(torch.randn(2, 4, 6, 2, 4)).shape == (2, 2, 3, 1, 8)
    with pytest.raises(ValueError, match="even"):
        merge(torch.randn(1, 3, 2, 2, 4))


def test_encoder_stage_outputs_and_argument_checks():
    encoder = SwinEncoder(2, 8, (2, 2, 2), (2, 2, 4), (2, 3, 2), patch_size=4)
    assert encoder.stride == 16 and encoder.channels == [8, 16, 32]
    features = encoder(torch.randn(1, 2, 32, 48, 16))
    assert [tuple(f.shape) for f in features] == [(1, 8, 8, 12, 4), (1, 16, 4, 6, 2), (1, 32, 2, 3, 1)]
    with pytest.raises(ValueError, match="num_heads"):
        SwinEncoder(2, 8, (2, 2), (3, 2), 2)
    with pytest.raises(ValueError, match="num_heads must have 2 entries"):
        SwinEncoder(2, 8, (2, 2), (2,), 2)
    with pytest.raises(ValueError, match="window_size"):
        SwinEncoder(2, 8, (2, 2), (2, 2), (2, 0, 2))
    with pytest.raises(ValueError, match="drop_path_rate"):
        SwinEncoder(2, 8, (2, 2), (2, 2), 2, drop_path_rate=1.0)


def test_masks_built_under_inference_mode_still_train():
    block = SwinBlock(8, 2, (2, 2, 3), shifted=True)
    with torch.inference_mode():
        block(torch.randn(1, 3, 5, 7, 8))  # first call for this layout fills the caches
    block(torch.randn(1, 3, 5, 7, 8, requires_grad=True)).sum().backward()
    assert block.attn.relative_position_bias_table.grad is not None


def test_batched_windows_match_one_volume_at_a_time():
    torch.manual_seed(0)
    block = SwinBlock(8, 2, (2, 3, 2), shifted=True)  # shifted and padded: a mask per window
    x = torch.randn(3, 5, 6, 3, 8)
    with torch.no_grad():
        batched = block(x)
        single = torch.cat([block(x[i : i + 1]) for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-6)
