"""Checkpoints round-trip exactly; malformed ones fail with one line naming the file."""

import pickle

import pytest
import torch

from gatta.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

from helpers import make_checkpoint, make_model


def test_round_trip_gives_identical_outputs(tmp_path):
    model = make_model(d=6, qk_batchnorm=True)
    path = save_checkpoint(tmp_path / "m.pt", model, {"epoch": 3})
    loaded, meta = load_checkpoint(path)
    assert meta.epoch == 3 and meta.val_size == 5000 and loaded.config == model.config
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded(x).logits)
    assert not (tmp_path / "m.pt.tmp").exists()


def _error(path) -> str:
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_missing_and_directory(tmp_path):
    assert "does not exist" in _error(tmp_path / "nope.pt")
    assert "directory" in _error(tmp_path)


def test_truncated_file(tmp_path):
    good = make_checkpoint(tmp_path / "good.pt").read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(good[: len(good) // 2])
    assert "not a readable checkpoint" in _error(bad)


def test_foreign_files(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x89PNG not a checkpoint at all" * 10)
    assert "not a readable checkpoint" in _error(junk)
    bare = tmp_path / "bare.pt"
    torch.save(make_model().state_dict(), bare)
    assert "not a gattanet checkpoint" in _error(bare)


class Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_code_in_the_file_is_never_executed(tmp_path, capsys):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "gattanet-checkpoint", "x": Evil()}, evil)
    assert "refused" in _error(evil)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(Evil()))
    _error(raw)
    assert "code ran" not in capsys.readouterr().out


def test_tampered_weights(tmp_path):
    path = make_checkpoint(tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["head.keys.0.weight"] = torch.zeros(3, 3)
    torch.save(payload, tmp_path / "shape.pt")
    assert "shape" in _error(tmp_path / "shape.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["head.alpha"][0] = float("nan")
    torch.save(payload, tmp_path / "nan.pt")
    assert "NaN" in _error(tmp_path / "nan.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["d"] = 32
    torch.save(payload, tmp_path / "config.pt")
    assert "config implies" in _error(tmp_path / "config.pt")
    payload = torch.load(path, weights_only=True)
    del payload["state_dict"]["head.alpha"]
    torch.save(payload, tmp_path / "missing.pt")
    assert "1 missing" in _error(tmp_path / "missing.pt")


def test_checkpoint_of_the_earlier_resnet_head_says_so(tmp_path):
    """A head saved with the earlier per-layer, non-affine batch norms (before Table 1's
    structure) is refused with what happened and what to do, not as a damaged file."""
    path = make_checkpoint(tmp_path / "old.pt", qk_batchnorm=True)
    payload = torch.load(path, weights_only=True)
    state = payload["state_dict"]
    for name in ("key", "query"):
        for key in [k for k in state if k.startswith(f"head.{name}_norm.")]:
            state[key.replace(f"head.{name}_norm.", f"head.{name}_norms.0.")] = state.pop(key)
    torch.save(payload, path)
    assert "written before the ResNet head took Table 1's structure" in _error(path)
