"""Checkpoints: exact round trips, the latest.json commit point, and refusal of bad files."""

import json
import re
import zipfile

import numpy as np
import pytest

from seqnet.errors import CheckpointError, ConfigError, DTypeError
from seqnet import array_files
from seqnet.training import checkpoint as ckpt

FORMATS = [
    pytest.param(
        True,
        id="safetensors",
        marks=pytest.mark.skipif(array_files._safetensors is None, reason="safetensors not installed"),
    ),
    pytest.param(False, id="npz"),
]


@pytest.fixture(params=FORMATS)
def array_format(request, monkeypatch):
    monkeypatch.setattr(array_files, "USE_SAFETENSORS", request.param)
    return ".safetensors" if request.param else ".npz"


def _weights(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "embedding.weight": rng.standard_normal((5, 3)).astype(np.float32),
        "lstm.bias": rng.standard_normal(8),  # float64
        "counts": np.arange(6, dtype=np.int64).reshape(2, 3) - 2**40,
        "scalar": np.array(1.5, dtype=np.float32),
    }


TASK_ARRAYS = {"carry/0": np.arange(6.0).reshape(1, 2, 3)}


def _save(run_dir, step, seed=0, trainer_extra=None, **kwargs):
    return ckpt.save_checkpoint(
        run_dir,
        config={"model": "lstm", "hidden_size": 3, "lr": 0.1, "betas": [0.9, 0.999]},
        task={"kind": "lm", "setup": {"tokenizer": {"kind": "char", "vocab": ["a", "b", "\n", "é"]}},
              "state": {"rng": ckpt.rng_to_json(np.random.default_rng(seed)),
                        "data": {"epoch": 1, "offset": 2**62 + 1, "order": [3, 1, 2]}}},
        trainer={"optimizer": {"name": "adam", "t": step}, **(trainer_extra or {})},
        weights=_weights(seed),
        optimizer_arrays={"m.lstm.bias": np.full(8, 0.25), "v.lstm.bias": np.zeros(8)},
        task_arrays=TASK_ARRAYS,
        step=step,
        **kwargs,
    )


def _assert_arrays_equal(actual, expected):
    assert list(actual) == list(expected)
    for name, array in expected.items():
        assert actual[name].dtype == array.dtype, name
        assert actual[name].shape == array.shape, name
        np.testing.assert_array_equal(actual[name], array)


def _array_file(step_dir, role="weights"):
    (path,) = [p for p in step_dir.iterdir() if p.name.startswith(role + ".")]
    return path


def test_round_trip(tmp_path, array_format):
    step_dir = _save(tmp_path, 7, trainer_extra={"history": [[1, 2.5]], "note": None})
    assert step_dir == tmp_path / "checkpoints" / "step-00000007"
    assert _array_file(step_dir).suffix == array_format

    loaded = ckpt.load_checkpoint(tmp_path)
    assert loaded.step == 7
    assert loaded.path == step_dir
    _assert_arrays_equal(loaded.weights, _weights())
    _assert_arrays_equal(loaded.optimizer_arrays, {"m.lstm.bias": np.full(8, 0.25), "v.lstm.bias": np.zeros(8)})
    assert loaded.config == {"model": "lstm", "hidden_size": 3, "lr": 0.1, "betas": [0.9, 0.999]}
    assert loaded.task["setup"] == {"tokenizer": {"kind": "char", "vocab": ["a", "b", "\n", "é"]}}
    assert loaded.task["state"]["data"] == {"epoch": 1, "offset": 2**62 + 1, "order": [3, 1, 2]}
    assert loaded.trainer == {"optimizer": {"name": "adam", "t": 7}, "history": [[1, 2.5]], "note": None}
    _assert_arrays_equal(loaded.task_arrays, TASK_ARRAYS)
    assert ckpt.load_checkpoint(tmp_path, optimizer=False).optimizer_arrays is None
    assert json.loads((tmp_path / "config.json").read_text())["hidden_size"] == 3
    # the step directory itself is loadable too
    assert ckpt.load_checkpoint(step_dir).step == 7


def test_save_and_load_arrays(tmp_path, array_format):
    path = ckpt.save_arrays(tmp_path / ("params" + array_files.suffix()), _weights())
    assert path == tmp_path / ("params" + array_format)
    loaded = ckpt.load_arrays(path)  # safetensors stores arrays in its own order
    _assert_arrays_equal({name: loaded[name] for name in _weights()}, _weights())


@pytest.mark.parametrize("written", [".npz", ".safetensors"])
def test_save_arrays_writes_exactly_the_path_given(tmp_path, array_format, written):
    """Whichever format new files prefer: ck/lm.npz is written as ck/lm.npz and loads from there."""
    if written == ".safetensors" and array_files._safetensors is None:
        pytest.skip("safetensors is not installed")
    path = tmp_path / "ck" / ("my.lm" + written)
    path.parent.mkdir()
    assert ckpt.save_arrays(str(path), _weights()) == path
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    loaded = ckpt.load_arrays(path)
    _assert_arrays_equal({name: loaded[name] for name in _weights()}, _weights())
    with open(path, "rb") as f:
        assert (f.read(2) == b"PK") == (written == ".npz")            # the format the suffix names


@pytest.mark.parametrize("name", ["params.bin", "my.model", "params"])
def test_save_arrays_refuses_a_suffix_it_cannot_write(tmp_path, name):
    with pytest.raises(ConfigError, match=rf"^path: expected a file name ending in .safetensors or .npz \(the suffix "
                                          rf"names the format; suffix\(\) gives the preferred one\), received "
                                          rf"'.*{re.escape(name)}'$"):
        ckpt.save_arrays(tmp_path / name, _weights())
    assert list(tmp_path.iterdir()) == []


def test_save_arrays_names_what_it_cannot_write(tmp_path):
    with pytest.raises(CheckpointError, match=rf"^cannot write {re.escape(str(tmp_path))}/no/w.npz: the directory "
                                              rf".*/no does not exist$"):
        ckpt.save_arrays(tmp_path / "no" / "w.npz", _weights())
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(CheckpointError, match=r"^cannot write .*d.npz: it is a directory$"):
        ckpt.save_arrays(tmp_path / "d.npz", _weights())
    with pytest.raises(ConfigError, match=r"^arrays: expected a dict of name -> numpy array, received list$"):
        ckpt.save_arrays(tmp_path / "w.npz", [np.zeros(2)])
    with pytest.raises(ConfigError, match=r"^path: expected a str or os.PathLike file name, received bytes$"):
        ckpt.save_arrays(b"w.npz", _weights())


@pytest.mark.parametrize("bit_generator", ["PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937"])
def test_rng_state_round_trips_through_json(bit_generator):
    generator = np.random.Generator(getattr(np.random, bit_generator)(1234))
    generator.random(3)  # move off the seeded state
    generator.integers(0, 10, size=1, dtype=np.uint32)  # leaves a buffered uint32 behind
    text = json.dumps(ckpt.rng_to_json(generator))
    restored = ckpt.rng_from_json(json.loads(text))
    np.testing.assert_array_equal(restored.random(10), generator.random(10))
    np.testing.assert_array_equal(restored.integers(0, 2**63, size=10), generator.integers(0, 2**63, size=10))


def test_rng_state_survives_a_checkpoint(tmp_path, array_format):
    generator = np.random.default_rng(99)
    generator.normal(size=5)
    ckpt.save_checkpoint(
        tmp_path, config={}, task={"state": {"train": ckpt.rng_to_json(generator)}}, trainer={}, weights={},
        optimizer_arrays={}, task_arrays={}, step=1,
    )
    restored = ckpt.rng_from_json(ckpt.load_checkpoint(tmp_path).task["state"]["train"])
    np.testing.assert_array_equal(restored.normal(size=20), generator.normal(size=20))


def test_rng_from_json_refuses_unknown_generator():
    with pytest.raises(CheckpointError, match="bit generator"):
        ckpt.rng_from_json({"bit_generator": "os.system", "state": {}})


def test_crash_before_pointer_swap_keeps_previous_checkpoint(tmp_path, array_format, monkeypatch):
    _save(tmp_path, 1, seed=1)
    real_write_json = ckpt.atomic_write_json

    def crash_on_pointer(path, obj):
        if path.name == "latest.json":
            raise KeyboardInterrupt("simulated crash")
        real_write_json(path, obj)

    monkeypatch.setattr(ckpt, "atomic_write_json", crash_on_pointer)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 2, seed=2)
    assert (tmp_path / "checkpoints" / "step-00000002" / "meta.json").exists()

    loaded = ckpt.load_checkpoint(tmp_path)
    assert loaded.step == 1
    _assert_arrays_equal(loaded.weights, _weights(seed=1))


def test_resaving_the_same_step_replaces_it(tmp_path, array_format):
    _save(tmp_path, 5, seed=1)
    _save(tmp_path, 5, seed=2)
    _assert_arrays_equal(ckpt.load_checkpoint(tmp_path).weights, _weights(seed=2))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000005"]


def test_crash_while_resaving_the_same_step_leaves_a_loadable_checkpoint(tmp_path, array_format, monkeypatch):
    _save(tmp_path, 5, seed=1)
    real_rename = ckpt.os.rename

    def crash_on_rename(src, dst):
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(ckpt.os, "rename", crash_on_rename)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 5, seed=2)
    monkeypatch.setattr(ckpt.os, "rename", real_rename)
    # The old step-00000005 is gone, but latest.json already named the complete staged copy.
    _assert_arrays_equal(ckpt.load_checkpoint(tmp_path).weights, _weights(seed=2))


def test_keep_deletes_older_step_dirs(tmp_path, array_format):
    for step in (10, 20, 30, 40):
        _save(tmp_path, step)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-00000030", "step-00000040"]
    _save(tmp_path, 50, keep=1)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000050"]
    assert ckpt.load_checkpoint(tmp_path).step == 50


def test_keep_never_deletes_the_pointed_at_checkpoint(tmp_path, array_format):
    # A run resumed from step 10 re-saves at 15 while stale later dirs (20, 30) remain.
    for step in (10, 20, 30):
        _save(tmp_path, step)
    _save(tmp_path, 15, keep=1)
    assert ckpt.load_checkpoint(tmp_path).step == 15


def test_truncated_array_file_is_refused(tmp_path, array_format):
    step_dir = _save(tmp_path, 3)
    path = _array_file(step_dir)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=f"{path.name} is truncated or corrupt"):
        ckpt.load_checkpoint(tmp_path)


def test_flipped_byte_is_refused(tmp_path, array_format):
    step_dir = _save(tmp_path, 3)
    path = _array_file(step_dir, "optimizer")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=rf"{path.name} is truncated or corrupt \(sha256 mismatch"):
        ckpt.load_checkpoint(tmp_path)


def test_corrupt_file_without_manifest_is_wrapped(tmp_path, array_format):
    path = ckpt.save_arrays(tmp_path / ("params" + array_format), _weights())
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match=path.name) as info:
        ckpt.load_arrays(path)
    assert info.value.__cause__ is not None


def test_missing_and_foreign_directories_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not a seqnet run directory"):
        ckpt.load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="not a seqnet run directory"):
        ckpt.load_checkpoint(tmp_path)  # exists, but empty
    assert not ckpt.has_checkpoint(tmp_path)

    (tmp_path / "latest.json").write_text('{"checkpoint": "checkpoints/step-00000001"}')
    with pytest.raises(CheckpointError, match="latest.json has format None"):
        ckpt.load_checkpoint(tmp_path)
    (tmp_path / "latest.json").write_text("not json at all")
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        ckpt.load_checkpoint(tmp_path)
    (tmp_path / "latest.json").write_text('[1, 2]')
    with pytest.raises(CheckpointError, match="expected an object"):
        ckpt.load_checkpoint(tmp_path)


def test_pointer_cannot_escape_the_run_directory(tmp_path):
    pointer = {"format": "seqnet-run", "format_version": 1, "checkpoint": "../elsewhere", "step": 1}
    (tmp_path / "latest.json").write_text(json.dumps(pointer))
    with pytest.raises(CheckpointError, match="expected 'checkpoints/<step directory>'"):
        ckpt.load_checkpoint(tmp_path)


def test_foreign_or_newer_meta_is_refused(tmp_path, array_format):
    step_dir = _save(tmp_path, 1)
    meta = json.loads((step_dir / "meta.json").read_text())
    (step_dir / "meta.json").write_text(json.dumps({**meta, "format": "someone-else"}))
    with pytest.raises(CheckpointError, match="not a seqnet checkpoint"):
        ckpt.load_checkpoint(tmp_path)
    (step_dir / "meta.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version 99"):
        ckpt.load_checkpoint(tmp_path)
    (step_dir / "meta.json").write_text('{"format": "seqnet-checkp')
    with pytest.raises(CheckpointError, match="meta.json is not valid JSON"):
        ckpt.load_checkpoint(tmp_path)


def test_npz_with_object_array_is_refused_without_unpickling(tmp_path):
    class Bomb:
        def __reduce__(self):
            return (_explode, ())

    path = tmp_path / "evil.npz"
    np.savez(path, payload=np.array([Bomb()], dtype=object))  # np.savez pickles object arrays
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["payload.npy"]
    with pytest.raises(CheckpointError, match="evil.npz") as info:
        ckpt.load_arrays(path)
    assert "allow_pickle" in str(info.value.__cause__)


def _explode():
    pytest.fail("loading a checkpoint executed pickled code")


def test_saving_object_arrays_and_non_string_keys_is_refused(tmp_path, array_format):
    with pytest.raises(DTypeError, match="dtype object"):
        ckpt.save_arrays(tmp_path / ("a" + array_format), {"x": np.array([None], dtype=object)})
    with pytest.raises(CheckpointError, match="dict key 3"):
        ckpt.atomic_write_json(tmp_path / "a.json", {"vocab": {3: "c"}})


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "state.json"
    ckpt.atomic_write_json(target, {"a": 1})
    ckpt.atomic_write_json(target, {"a": 2, "big": 2**100, "x": np.float32(0.5)})
    assert json.loads(target.read_text()) == {"a": 2, "big": 2**100, "x": 0.5}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "state.bin"
    ckpt.atomic_write_bytes(target, b"old")

    def crash(*args):
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(ckpt.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        ckpt.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]


def test_has_checkpoint(tmp_path, array_format):
    assert not ckpt.has_checkpoint(tmp_path)
    _save(tmp_path, 1)
    assert ckpt.has_checkpoint(tmp_path)
