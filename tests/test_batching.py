"""StreamBatcher and iter_eval_batches on ids = arange(N), so each id equals its position.

With N = 103, batch_size B = 4, seq_len T = 5: each stream holds L = 103 // 4 = 25 ids
(stream b starts at 25*b; ids 100..102 are dropped), and an epoch is (25 - 1) // 5 = 4
batches covering positions 0..19 of every stream as inputs.
"""

import json

import numpy as np
import pytest

from seqnet.data import StreamBatcher, iter_eval_batches
from seqnet.errors import ConfigError, CorpusError

N, B, T = 103, 4, 5
STREAM_LEN, BATCHES_PER_EPOCH = 25, 4


def take(batcher, count):
    return [batcher.next_batch() for _ in range(count)]


def test_batch_shapes_dtype_and_epoch_length():
    batcher = StreamBatcher(np.arange(N), B, T)
    assert len(batcher) == BATCHES_PER_EPOCH
    inputs, targets = batcher.next_batch()
    assert inputs.shape == targets.shape == (T, B)
    assert inputs.dtype == targets.dtype == np.int64


def test_first_batch_by_hand():
    inputs, targets = StreamBatcher(np.arange(N), B, T).next_batch()
    assert inputs[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert inputs[:, 1].tolist() == [25, 26, 27, 28, 29]
    assert inputs[0].tolist() == [0, 25, 50, 75]


def test_epoch_covers_each_stream_usable_part_once_and_in_order():
    batches = take(StreamBatcher(np.arange(N), B, T), BATCHES_PER_EPOCH)
    for stream in range(B):
        seen = np.concatenate([inputs[:, stream] for inputs, _ in batches])
        start = stream * STREAM_LEN
        assert seen.tolist() == list(range(start, start + BATCHES_PER_EPOCH * T))
    all_inputs = np.concatenate([inputs.ravel() for inputs, _ in batches])
    assert len(np.unique(all_inputs)) == all_inputs.size == B * BATCHES_PER_EPOCH * T


def test_targets_are_inputs_shifted_by_one_within_the_stream():
    ids = np.arange(N) * 7 % 101  # not arange, so a target must come from ids, not inputs + 1
    position_batches = take(StreamBatcher(np.arange(N), B, T), BATCHES_PER_EPOCH)
    id_batches = take(StreamBatcher(ids, B, T), BATCHES_PER_EPOCH)
    for (positions, _), (inputs, targets) in zip(position_batches, id_batches):
        assert np.array_equal(inputs, ids[positions])
        assert np.array_equal(targets, ids[positions + 1])


def test_cycles_epochs_and_counts_position():
    batcher = StreamBatcher(np.arange(N), B, T)
    first_epoch = take(batcher, BATCHES_PER_EPOCH)
    assert (batcher.position, batcher.epoch) == (BATCHES_PER_EPOCH, 1)
    second_epoch = take(batcher, BATCHES_PER_EPOCH)
    for (a, _), (b, _) in zip(first_epoch, second_epoch):
        assert np.array_equal(a, b)
    assert batcher.epoch == 2


def test_iteration_yields_the_rest_of_the_current_epoch():
    batcher = StreamBatcher(np.arange(N), B, T)
    assert len(list(batcher)) == BATCHES_PER_EPOCH
    batcher.next_batch()
    assert len(list(batcher)) == BATCHES_PER_EPOCH - 1
    assert batcher.position == 2 * BATCHES_PER_EPOCH


def test_state_dict_resume_gives_the_identical_next_batch():
    ids = np.random.default_rng(0).integers(0, 50, size=N)
    original = StreamBatcher(ids, B, T)
    take(original, 7)
    state = json.loads(json.dumps(original.state_dict()))
    expected_inputs, expected_targets = original.next_batch()

    resumed = StreamBatcher(ids, B, T)
    resumed.load_state_dict(state)
    inputs, targets = resumed.next_batch()
    assert np.array_equal(inputs, expected_inputs) and np.array_equal(targets, expected_targets)

    started = StreamBatcher(ids, B, T, start=7)
    assert np.array_equal(started.next_batch()[0], expected_inputs)


def test_load_state_dict_rejects_other_layout_or_data():
    state = StreamBatcher(np.arange(N), B, T).state_dict()
    with pytest.raises(ConfigError, match=r"state\['seq_len'\]: expected 4"):
        StreamBatcher(np.arange(N), B, 4).load_state_dict(state)
    with pytest.raises(CorpusError, match="num_tokens"):
        StreamBatcher(np.arange(N + 1), B, T).load_state_dict(state)


def test_works_on_a_memmap(tmp_path):
    path = tmp_path / "ids.bin"
    np.arange(N, dtype="<u2").tofile(path)
    ids = np.memmap(path, dtype="<u2", mode="r", shape=(N,))
    inputs, targets = StreamBatcher(ids, B, T, start=1).next_batch()
    assert inputs.dtype == np.int64
    assert inputs[:, 2].tolist() == [55, 56, 57, 58, 59]
    assert targets[:, 2].tolist() == [56, 57, 58, 59, 60]


def test_too_large_seq_len_says_tokens_and_limits():
    # 10 tokens, 2 streams of 5: a batch needs seq_len + 1 = 6 per stream.
    with pytest.raises(CorpusError) as caught:
        StreamBatcher(np.arange(10), 2, 5)
    message = str(caught.value)
    assert "10 tokens" in message
    assert "largest seq_len is 4" in message
    assert "largest batch_size is 1" in message


def test_too_large_batch_size_says_no_seq_len_fits():
    with pytest.raises(CorpusError, match="no seq_len fits batch_size=8"):
        StreamBatcher(np.arange(10), 8, 1)


@pytest.mark.parametrize("name, kwargs", [
    ("batch_size", {"batch_size": 0, "seq_len": 2}),
    ("seq_len", {"batch_size": 2, "seq_len": -1}),
    ("seq_len", {"batch_size": 2, "seq_len": 2.0}),
    ("batch_size", {"batch_size": True, "seq_len": 2}),
])
def test_rejects_non_positive_or_non_int_sizes(name, kwargs):
    with pytest.raises(ConfigError, match=f"{name}: expected a positive integer"):
        StreamBatcher(np.arange(N), **kwargs)


def test_eval_batches_walk_once_with_short_last_batch():
    # 23 tokens, 2 streams of 11: inputs are positions 0..9 of each stream, T = 4, 4, 2.
    batches = list(iter_eval_batches(np.arange(23), 2, 4))
    assert [inputs.shape for inputs, _ in batches] == [(4, 2), (4, 2), (2, 2)]
    for stream in range(2):
        inputs = np.concatenate([x[:, stream] for x, _ in batches])
        targets = np.concatenate([y[:, stream] for _, y in batches])
        assert inputs.tolist() == list(range(11 * stream, 11 * stream + 10))
        assert targets.tolist() == list(range(11 * stream + 1, 11 * stream + 11))
    again = list(iter_eval_batches(np.arange(23), 2, 4))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(batches, again))


def test_eval_batches_without_a_short_batch_when_it_divides():
    batches = list(iter_eval_batches(np.arange(18), 2, 4))  # L = 9, 8 inputs = 2 x 4
    assert [inputs.shape for inputs, _ in batches] == [(4, 2), (4, 2)]


def test_eval_batches_reject_too_little_data():
    with pytest.raises(CorpusError, match="3 tokens .* largest batch_size for them is 1"):
        iter_eval_batches(np.arange(3), 2, 4)
