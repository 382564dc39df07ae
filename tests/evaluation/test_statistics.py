import numpy as np
import pytest

from llamareg.evaluation.statistics import paired_difference


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
