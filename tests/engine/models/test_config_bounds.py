"""A weights file's embedded config is checked against bounds declared next to each config, and
the network it describes is sized on torch's meta device, before anything real is built."""

from __future__ import annotations

import dataclasses
import json
import resource

import pytest
import torch

from misr_engine.errors import MisrError
from misr_engine.models.config_bounds import bounds_of, checked_config, unbounded_fields
from misr_engine.models.registry import MODELS, model_spec
from misr_engine.models.weights import plan_model, read_metadata


@pytest.mark.parametrize("name", MODELS)
def test_every_numeric_config_field_of_every_model_has_a_bound(name):
    """New config fields (and new models) must declare what a weights file may ask for."""
    config_class = model_spec(name).config_class()
    assert unbounded_fields(config_class) == []
    assert set(bounds_of(config_class)) <= {f.name for f in dataclasses.fields(config_class)}
    assert callable(getattr(config_class(), "tile_bytes", None)), "the budget needs its tile memory"


@pytest.mark.parametrize("name", MODELS)
def test_the_shipped_config_is_within_its_bounds(name):
    spec = model_spec(name)
    raw = json.loads(read_metadata(spec.default_weights)["config"])
    assert checked_config(spec.config_class(), raw, "shipped") == spec.config_class()(**raw)


@pytest.mark.parametrize("raw,problem", [
    ({"n_feat": 10 ** 6}, "n_feat=1000000: must be between 1 and 256"),
    ({"n_tefa": -1}, "n_tefa=-1: must be between 0 and 64"),
    ({"deconv_kernel": 20}, "deconv_kernel=20: must be 0 or odd"),
    ({"n_feat": 32.5}, "n_feat=32.5: must be an integer"),
    ({"n_feat": "32"}, "n_feat='32': must be an integer"),
    ({"n_feat": True}, "n_feat=True: must be an integer"),
    ({"phase_inputs": 1}, "phase_inputs=1: must be true or false"),
    ({"surprise": 1}, "unknown model config key 'surprise'"),
    ("[1, 2]", "not a JSON object"),
    ("{", "not valid JSON"),
])
def test_configs_out_of_bounds_are_refused_naming_the_key(raw, problem):
    with pytest.raises(MisrError, match=f"^w.safetensors: .*{problem.replace('(', '.').replace(')', '.')}"):
        checked_config(model_spec("piunet").config_class(), raw, "w.safetensors")


def test_the_meta_device_counts_the_parameters_without_allocating_them():
    plan = plan_model("piunet")
    real = model_spec("piunet").build(plan.config)
    assert plan.parameters == sum(t.numel() for t in real.state_dict().values())
    config = dataclasses.replace(plan.config, n_feat=256, n_tefa=64)  # the largest the bounds allow
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.device("meta"):
        huge = model_spec("piunet").build(config)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    count = sum(p.numel() for p in huge.parameters())
    assert count > 100_000_000 and grown_mb < 100  # 400+ MB of float32 on a real device
