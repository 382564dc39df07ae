import numpy as np
import pytest

from llamareg.evaluation.statistics import paired_difference, seed_pooled_difference


def test_a_consistent_gain_is_better_and_its_interval_holds_the_mean():
    rng = np.random.default_rng(0)
    b = rng.uniform(0.6, 0.8, 20)
    result = paired_difference(b + 0.02 + rng.normal(0, 0.005, 20), b)
    assert result.verdict == "better" and result.low > 0
    assert result.low < result.mean < result.high
    assert abs(result.mean - 0.02) < 0.005
    assert result.p_wilcoxon < 0.001


def test_noise_around_zero_is_no_difference_and_sign_flips():
    rng = np.random.default_rng(1)
    b = rng.uniform(0.6, 0.8, 20)
    a = b + rng.normal(0, 0.02, 20)
    assert paired_difference(a, b).verdict == "no difference"
    assert paired_difference(b - 0.05, b).verdict == "worse"


def test_identical_scores_and_bad_input():
    result = paired_difference([0.5, 0.6], [0.5, 0.6])
    assert result.mean == 0 and result.p_wilcoxon == 1.0 and result.verdict == "no difference"
    with pytest.raises(ValueError, match="one length"):
        paired_difference([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="at least 2"):
        paired_difference([0.1], [0.2])


# ----------------------------------------------------------------------------- several training seeds


def test_seed_spread_is_mean_and_sd_of_the_per_seed_means():
    # Per-seed means 0.5, 0.6, 0.7: mean 0.6, sd (ddof=1) 0.1; the identity row is one 'seed' with sd 0.
    a = [[0.4, 0.6], [0.5, 0.7], [0.6, 0.8]]
    result = seed_pooled_difference(a, [0.5, 0.5])
    assert (result.a.seeds, result.b.seeds, result.pairs) == (3, 1, 2)
    assert result.a.mean == pytest.approx(0.6) and result.a.sd == pytest.approx(0.1)
    assert result.b.mean == pytest.approx(0.5) and result.b.sd == 0.0
    # Pooled over every seed and pair: mean of a[i, p] - b[p] = 0.6 - 0.5.
    assert result.mean == pytest.approx(0.1)
    assert str(result.a) == "0.6000 +- 0.1000 (3 seeds)" and str(result.b) == "0.5000 +- 0.0000 (1 seed)"


def test_a_constant_shift_collapses_the_interval_at_the_shift():
    base = np.linspace(0.6, 0.8, 10)
    a = {seed: base + 0.02 for seed in (0, 1, 2)}  # three seeds that happen to score alike, each exactly 0.02 above
    result = seed_pooled_difference(a, base)
    assert result.mean == pytest.approx(0.02, abs=1e-12)
    assert result.low == pytest.approx(0.02, abs=1e-12) and result.high == pytest.approx(0.02, abs=1e-12)
    assert result.a.sd == pytest.approx(0.0, abs=1e-12) and result.verdict == "better" and result.p_wilcoxon < 0.01
    assert seed_pooled_difference(base, a).verdict == "worse"


def test_seeds_are_not_paired_across_methods():
    # a is b + 0.03 seed by seed, but seed k of one method is not related to seed k of the other: b's spread
    # across seeds stays in the interval (against one run of b it would collapse, as above).
    rng = np.random.default_rng(0)
    b = rng.uniform(0.6, 0.8, size=(3, 12))
    result = seed_pooled_difference(b + 0.03, b)
    assert result.mean == pytest.approx(0.03, abs=1e-12)
    assert result.low < 0.03 - 1e-3 and result.high > 0.03 + 1e-3


def test_pure_noise_gives_an_interval_holding_zero():
    rng = np.random.default_rng(1)
    truth = rng.uniform(0.6, 0.8, 20)
    a = truth + rng.normal(0, 0.02, size=(3, 20))
    b = truth + rng.normal(0, 0.02, size=(3, 20))
    result = seed_pooled_difference(a, b)
    assert result.low < 0 < result.high and result.verdict == "no difference"
    assert result.p_wilcoxon > 0.05


def test_seed_noise_widens_the_interval_against_one_seed():
    # Pair-level scores shared by all seeds, plus a per-seed offset (one training run better than another).
    rng = np.random.default_rng(2)
    b = rng.uniform(0.6, 0.8, 16)
    pairs = b + 0.02 + rng.normal(0, 0.005, 16)
    offsets = np.array([-0.03, 0.0, 0.03, -0.015, 0.015])
    several = pairs + offsets[:, None]
    pooled = seed_pooled_difference(several, b)
    single = seed_pooled_difference(several.mean(axis=0), b)  # the same mean, seed spread left out
    assert pooled.mean == pytest.approx(single.mean, abs=1e-12)
    assert (pooled.high - pooled.low) > 3 * (single.high - single.low)
    assert pooled.a.sd == pytest.approx(offsets.std(ddof=1))
    # With one seed each it is the plain paired comparison: same mean, same Wilcoxon p, close interval.
    plain = paired_difference(several[0], b)
    one = seed_pooled_difference(several[0], b)
    assert one.mean == pytest.approx(plain.mean) and one.p_wilcoxon == pytest.approx(plain.p_wilcoxon)
    assert one.low == pytest.approx(plain.low, abs=2e-3) and one.high == pytest.approx(plain.high, abs=2e-3)


def test_wilcoxon_is_on_the_seed_averaged_differences():
    from scipy import stats

    rng = np.random.default_rng(3)
    a, b = rng.uniform(0.6, 0.8, size=(4, 9)), rng.uniform(0.6, 0.8, size=(2, 9))
    result = seed_pooled_difference(a, b)
    assert result.p_wilcoxon == pytest.approx(stats.wilcoxon(a.mean(axis=0) - b.mean(axis=0)).pvalue)
    assert result.to_dict()["a"] == {"mean": result.a.mean, "sd": result.a.sd, "seeds": 4}
    assert result.to_dict()["verdict"] == result.verdict


@pytest.mark.parametrize(
    "a, b, culprit",
    [
        ([[[0.1, 0.2]]], [0.1, 0.2], "a must be per-pair scores"),
        ([0.1, 0.2], {}, "b holds no seed"),
        ({0: [0.1, 0.2], 1: [0.1]}, [0.1, 0.2], r"a must score the same pairs with every seed.*seed 1: 1"),
        ([0.1, 0.2], [0.1, float("nan")], "b must hold finite scores"),
        ([0.1, 0.2, 0.3], [0.1, 0.2], "a and b must score the same pairs, got 3 pairs per seed in a and 2 in b"),
        ([0.1], [0.2], "at least 2 pairs"),
        ([0.1, "x"], [0.1, 0.2], "a must be per-pair scores"),
    ],
)
def test_seed_pooled_input_errors_name_the_argument(a, b, culprit):
    with pytest.raises(ValueError, match=culprit):
        seed_pooled_difference(a, b)


def test_seed_pooled_resamples_must_be_positive():
    with pytest.raises(ValueError, match="resamples must be a positive integer"):
        seed_pooled_difference([0.1, 0.2], [0.1, 0.2], resamples=0)
