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
        for parameter in moved.parameters():
            parameter.add_(0.01 * torch.randn(parameter.shape, generator=generator))
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
        expected = first[name] + share * (second[name] - first[name]) if tensor.is_floating_point() else first[name]
        torch.testing.assert_close(tensor, expected, rtol=0, atol=1e-6)
    if share in (0.0, 1.0):  # the ends are the files themselves, bit for bit
        assert all(torch.equal(blend[name], (first if share == 0 else second)[name]) for name in blend)
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


def test_counts_and_indices_must_agree():
    start = {"w": torch.zeros(2), "n": torch.tensor([3])}
    assert torch.equal(interpolated_state(start, {"w": torch.ones(2), "n": torch.tensor([3])}, 0.25)["w"],
                       torch.full((2,), 0.25))
    with pytest.raises(ValueError, match="'n' is not floating-point"):
        interpolated_state(start, {"w": torch.ones(2), "n": torch.tensor([4])}, 0.5)
