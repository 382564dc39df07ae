import json

import numpy as np
import pytest
import torch

from llamareg.data.devtest import build_devtest_subjects, parcellate, write_devtest
from llamareg.data.pair_list import PAIR_KEYS, read_pair_list


def test_parcellate_cuts_each_label_into_connected_parcels():
    tissue = np.zeros((20, 20, 20), dtype=np.int64)
    tissue[2:10] = 1
    tissue[10:18] = 2
    parcels = parcellate(tissue, 5, seed=0)
    assert sorted(np.unique(parcels[tissue == 1]).tolist()) == [1, 2, 3, 4, 5]
    assert sorted(np.unique(parcels[tissue == 2]).tolist()) == [6, 7, 8, 9, 10]
    assert (parcels[tissue == 0] == 0).all()
    assert np.array_equal(parcels, parcellate(tissue, 5, seed=0))
    with pytest.raises(ValueError, match="parcels_per_label"):
        parcellate(tissue, 0, seed=0)


def test_devtest_subjects_are_reproducible_and_carry_about_100_parcels():
    first = build_devtest_subjects(2, shape=(48, 64, 48), spacing_mm=3.25)
    again = build_devtest_subjects(2, shape=(48, 64, 48), spacing_mm=3.25)
    assert torch.equal(first[1].image, again[1].image)
    assert not torch.equal(first[0].labels, first[1].labels)
    assert 90 <= len(torch.unique(first[0].labels)) - 1 <= 100


def test_write_devtest_gives_a_pair_list_evaluate_reads(tmp_path):
    pairs_path = write_devtest(tmp_path / "devtest", 3, shape=(48, 64, 48), spacing_mm=3.25)
    pairs = read_pair_list(pairs_path, required=PAIR_KEYS)
    assert len(pairs) == 3
    assert {pair.moving for pair in pairs} == {pair.fixed for pair in pairs}
    description = json.loads((tmp_path / "devtest" / "devtest.json").read_text())
    assert description["pairs"] == 3 and "not inter-subject" in description["what"]
