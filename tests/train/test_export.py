"""A run directory's networks: backbone.safetensors, one file per extra network, networks.json."""
import json

import pytest
import torch

import two_networks  # registers the "two-networks" test method (cmd's shape)
from vidssl.config import load_config, to_yaml
from vidssl.data.augment import ClipAugment
from vidssl.methods.base import backbone_spec, build_method, method_config
from vidssl.train.export import backbone_from_run, run_network_specs, save_backbone, save_networks


def _trained_looking(method):
    """Every parameter and buffer changed from its initial value, so only a real load reproduces them."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in method.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            else:
                t.fill_(7)
    return method


def test_every_network_is_exported_and_rebuilt_bitwise(tmp_path):
    model = load_config([], ["data.root=.", "model.depth=10", "model.width=8", "model.networks.iframe.width=4"]).model
    cfg = method_config(two_networks.NAME, {"name": two_networks.NAME})
    method = _trained_looking(build_method(two_networks.NAME, backbone_spec(model).build(), cfg, 3,
                                           ClipAugment(crop_size=16), model=model))
    files = save_networks(method, tmp_path)
    assert {n: f.name for n, f in files.items()} == {"backbone": "backbone.safetensors",
                                                     "iframe": "iframe.safetensors", "motion": "motion.safetensors"}
    index = json.loads((tmp_path / "networks.json").read_text())
    assert index["motion"] == {"file": "motion.safetensors", "backbone": "r3d", "width": 8, "depth": 10,
                               "in_channels": 2}
    assert index["iframe"]["backbone"] == "r2d" and index["iframe"]["width"] == 4
    for name, original in method.named_networks().items():
        rebuilt = backbone_from_run(tmp_path, network=name)
        assert rebuilt.spec == original.spec
        a, b = original.state_dict(), rebuilt.state_dict()
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    assert set(run_network_specs(tmp_path)) == {"backbone", "iframe", "motion"}
    with pytest.raises(KeyError, match="no network 'flow'; this run has: backbone, iframe, motion"):
        backbone_from_run(tmp_path, network="flow")


def test_a_run_without_networks_json_still_loads_its_backbone(tmp_path):
    # Run directories from before networks.json: config.yaml and backbone.safetensors only.
    cfg = load_config([], ["data.root=.", "model.depth=10", "model.width=4"])
    (tmp_path / "config.yaml").write_text(to_yaml(cfg))
    backbone = _trained_looking(backbone_spec(cfg.model).build())
    save_backbone(backbone, tmp_path / "backbone.safetensors")
    rebuilt = backbone_from_run(tmp_path)
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, rebuilt.state_dict()[key]), key
    with pytest.raises(KeyError, match="this run has: backbone"):
        backbone_from_run(tmp_path, network="iframe")
