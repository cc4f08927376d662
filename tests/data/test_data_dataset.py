"""PreparedDataset (splits, batches) and BatchOrder (coverage, determinism, resume)."""

import json

import numpy as np
import pytest
import torch

from facegan.data import BatchOrder, DataError, PrepareConfig, open_prepared, prepare


@pytest.fixture
def celeba(celeba_dir):
    return prepare(PrepareConfig(data=str(celeba_dir), size=32, workers=1), progress=False)


@pytest.fixture
def folder_dataset(image_folder):
    return prepare(PrepareConfig(data=str(image_folder), size=32, workers=1), progress=False)


def test_split_indices_follow_the_partition(celeba):
    assert celeba.split_indices().tolist() == [0, 1, 2, 3, 4, 5, 10]
    assert celeba.split_indices("val").tolist() == [6, 7]
    assert celeba.split_indices("test").tolist() == [8, 9]
    assert celeba.split_indices("all").tolist() == list(range(11))
    assert celeba.split_indices("train").dtype == np.int64


def test_plain_folder_is_all_train_and_empty_split_names_the_available_ones(folder_dataset):
    assert folder_dataset.split_indices("train").tolist() == list(range(6))
    with pytest.raises(DataError, match=r"no 'val' images in .*; available splits: train \(6\)$"):
        folder_dataset.split_indices("val")
    with pytest.raises(DataError, match="unknown split 'validation'"):
        folder_dataset.split_indices("validation")


def test_load_batch_shape_range_and_values(folder_dataset):
    batch = folder_dataset.load_batch(np.array([2, 0]))
    assert batch.shape == (2, 3, 32, 32) and batch.dtype == torch.float32
    assert batch.min() >= -1 and batch.max() <= 1
    # image 0 is pure red: 255 -> 1, 0 -> -1; image 2 (f.TIFF) is magenta
    assert batch[1, :, 4, 4].tolist() == [1.0, -1.0, -1.0]
    assert batch[0, :, 4, 4].tolist() == [1.0, -1.0, 1.0]
    expected = torch.from_numpy(np.asarray(folder_dataset.images[[2, 0]])).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.equal(batch, expected)


def test_open_prepared_rejects_other_folders(tmp_path):
    with pytest.raises(DataError, match="not a prepared dataset"):
        open_prepared(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"something": "else"}))
    with pytest.raises(DataError, match="not a prepared dataset"):
        open_prepared(tmp_path)


def drain(order: BatchOrder, batches: int) -> list[list[int]]:
    return [order.next_batch().tolist() for _ in range(batches)]


def test_each_epoch_visits_every_index_once_and_drops_the_tail():
    indices = np.arange(100, 110)
    order = BatchOrder(indices, batch_size=3, seed=0)
    for _epoch in range(3):
        seen = sum(drain(order, 3), [])
        assert len(seen) == len(set(seen)) == 9 and set(seen) <= set(indices.tolist())
    assert order.state_dict() == {"epoch": 2, "position": 9}


def test_epochs_are_differently_shuffled():
    order = BatchOrder(np.arange(50), batch_size=50, seed=0)
    first, second = order.next_batch(), order.next_batch()
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(50))
    assert first.tolist() != second.tolist() and first.tolist() != list(range(50))


def test_order_is_deterministic_per_seed():
    assert drain(BatchOrder(np.arange(20), 4, seed=1), 12) == drain(BatchOrder(np.arange(20), 4, seed=1), 12)
    assert drain(BatchOrder(np.arange(20), 4, seed=1), 12) != drain(BatchOrder(np.arange(20), 4, seed=2), 12)


def test_state_dict_round_trip_resumes_identically():
    original = BatchOrder(np.arange(7, 30), batch_size=5, seed=3)
    drain(original, 6)
    state = json.loads(json.dumps(original.state_dict()))
    expected = drain(original, 10)

    resumed = BatchOrder(np.arange(7, 30), batch_size=5, seed=3)
    resumed.load_state_dict(state)
    assert drain(resumed, 10) == expected


def test_batch_larger_than_the_set_and_bad_state_are_data_errors():
    with pytest.raises(DataError, match="batch size 11 is larger than the 10 images"):
        BatchOrder(np.arange(10), batch_size=11, seed=0)
    order = BatchOrder(np.arange(10), batch_size=2, seed=0)
    with pytest.raises(DataError):
        order.load_state_dict({"epoch": 0, "position": 11})
    with pytest.raises(DataError):
        order.load_state_dict({"epoch": "0"})
