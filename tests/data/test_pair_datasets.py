from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from llamareg.data.pair_datasets import EvaluationPairs, TrainingPairs, consecutive_pairs
from llamareg.data.volume import Volume


@pytest.fixture(scope="module")
def volumes():
    generator = torch.Generator().manual_seed(0)
    return [
        Volume(
            torch.rand(1, 4, 6, 8, generator=generator),
            torch.full((1, 4, 6, 8), index, dtype=torch.long),
            torch.eye(4, dtype=torch.float64),
            f"v{index}",
        )
        for index in range(5)
    ]


def names(dataset, count):
    return [(dataset[i]["moving_name"], dataset[i]["fixed_name"]) for i in range(count)]


def test_item_depends_only_on_seed_and_index(volumes):
    pairs = TrainingPairs(volumes, seed=3, length=200)
    assert names(pairs, 50) == names(TrainingPairs(volumes, seed=3, length=50), 50)
    # Reading in another order (as a resumed run or a worker does) gives the same items.
    assert [pairs[i]["moving_name"] for i in reversed(range(50))] == [m for m, _ in reversed(names(pairs, 50))]
    assert names(pairs, 50) != names(TrainingPairs(volumes, seed=4, length=200), 50)


def test_pairs_are_distinct_and_cover_all_volumes(volumes):
    pairs = TrainingPairs(volumes, seed=0, length=2000)
    drawn = [pairs.pair_indices(i) for i in range(len(pairs))]
    assert all(moving != fixed for moving, fixed in drawn)
    ordered = Counter(drawn)
    assert len(ordered) == 5 * 4
    # Uniform over the 20 ordered pairs: 100 expected each.
    assert min(ordered.values()) > 60 and max(ordered.values()) < 140


def test_item_content_matches_the_named_volumes(volumes):
    item = TrainingPairs(volumes, seed=0, length=10)[7]
    moving, fixed = (int(item[key][1:]) for key in ("moving_name", "fixed_name"))
    assert torch.equal(item["moving"], volumes[moving].image)
    assert torch.equal(item["fixed_labels"], volumes[fixed].labels)
    assert item["moving_labels"].dtype == torch.int64


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_batches_pairs(volumes, num_workers):
    pairs = TrainingPairs(volumes, seed=1, length=8)
    batches = list(DataLoader(pairs, batch_size=4, num_workers=num_workers))
    assert len(batches) == 2
    batch = batches[1]
    assert batch["moving"].shape == (4, 1, 4, 6, 8) and batch["fixed_labels"].dtype == torch.int64
    assert list(zip(batch["moving_name"], batch["fixed_name"])) == names(pairs, 8)[4:]


def test_evaluation_pairs_follow_the_list(volumes):
    evaluation = EvaluationPairs(volumes, [(0, 3), (4, 1)])
    assert len(evaluation) == 2
    assert (evaluation[1]["moving_name"], evaluation[1]["fixed_name"]) == ("v4", "v1")
    batch = next(iter(DataLoader(evaluation, batch_size=2)))
    assert batch["fixed"].shape == (2, 1, 4, 6, 8)


def test_consecutive_pairs_never_repeat_or_self_pair():
    assert consecutive_pairs(4) == [(0, 1), (1, 2), (2, 3), (3, 0)]
    every = consecutive_pairs(5, 20)
    assert len(set(every)) == 20 and all(m != f for m, f in every)
    first_round = consecutive_pairs(5)
    assert sorted(m for m, _ in first_round) == sorted(f for _, f in first_round) == list(range(5))
    with pytest.raises(ValueError, match="num_pairs"):
        consecutive_pairs(3, 7)


def test_invalid_pair_inputs_are_refused(volumes):
    with pytest.raises(ValueError, match="at least 2 volumes"):
        TrainingPairs(volumes[:1], seed=0, length=4)
    with pytest.raises(ValueError, match="one shape"):
        odd = Volume(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2, dtype=torch.long), volumes[0].affine, "odd")
        EvaluationPairs([*volumes, odd], [(0, 1)])
    with pytest.raises(ValueError, match="distinct"):
        EvaluationPairs(volumes, [(2, 2)])
    with pytest.raises(ValueError, match="distinct"):
        EvaluationPairs(volumes, [(0, 5)])
    with pytest.raises(IndexError):
        TrainingPairs(volumes, seed=0, length=4)[4]
