"""Weights part of the way from the shipped weights to a continued training of them (WiSE-FT)."""

from __future__ import annotations

import json

import pytest
import torch
from misr_engine.errors import MisrError
from misr_engine.models.weights import file_sha256, load_model, read_metadata, save_weights
from misr_engine.training.interpolation import interpolate_weights, interpolated_state


@pytest.fixture(scope="module")
def two_weights(tmp_path_factory):
    """The shipped PIUnet weights and a copy whose every parameter moved (a stand-in for a
    continued training of them)."""
    shipped = load_model("piunet")
    moved = load_model("piunet").model
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in moved.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.01 * torch.randn(tensor.shape, generator=generator))
            else:  # BatchNorm's counter of batches seen, as a continued training moves it
                tensor.add_(600)
    tuned = tmp_path_factory.mktemp("weights") / "tuned.safetensors"
    save_weights(moved, tuned, {"loss": "udl"})
    return shipped.path, tuned


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_interpolated_weights_lie_the_share_of_the_way_and_say_where_they_came_from(two_weights, tmp_path, share):
    start, tuned = two_weights
    out = tmp_path / "blend.safetensors"
    interpolate_weights("piunet", start, tuned, share, out)
    blend = load_model("piunet", out).model.state_dict()
    first, second = load_model("piunet", start).model.state_dict(), load_model("piunet", tuned).model.state_dict()
    for name, tensor in blend.items():
        expected = first[name] + share * (second[name] - first[name]) if tensor.is_floating_point() else second[name]
        torch.testing.assert_close(tensor, expected, rtol=0, atol=1e-6)
    if share in (0.0, 1.0):  # at the ends every parameter and statistic is that file's, bit for bit
        end = first if share == 0 else second
        assert all(torch.equal(blend[name], end[name]) for name in blend if blend[name].is_floating_point())
    source = json.loads(read_metadata(out)["interpolation"])
    assert source["share_of_tuned"] == share
    assert (source["start"]["sha256"], source["tuned"]["sha256"]) == (file_sha256(start), file_sha256(tuned))
    assert read_metadata(out)["loss"] == "udl"


def test_weights_of_different_networks_are_refused_in_one_line(two_weights, tmp_path):
    start, _ = two_weights
    deepsum = load_model("deepsum").path
    with pytest.raises(MisrError, match="weights are for model 'deepsum'") as error:
        interpolate_weights("piunet", start, deepsum, 0.5, tmp_path / "x.safetensors")
    assert "\n" not in str(error.value)
    with pytest.raises(MisrError, match="outside"):
        interpolate_weights("piunet", start, start, 1.5, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_counters_come_from_the_continuation_and_states_must_match():
    start = {"w": torch.zeros(2), "n": torch.tensor(3)}
    blend = interpolated_state(start, {"w": torch.ones(2), "n": torch.tensor(7)}, 0.25)
    assert torch.equal(blend["w"], torch.full((2,), 0.25)) and int(blend["n"]) == 7
    with pytest.raises(ValueError, match="different tensors"):
        interpolated_state(start, {"w": torch.ones(2)}, 0.5)
    with pytest.raises(ValueError, match="shapes"):
        interpolated_state(start, {"w": torch.ones(3), "n": torch.tensor(3)}, 0.5)
