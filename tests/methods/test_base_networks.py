"""A method's networks: extra ones declared by the method, built from config, validated like every key."""
import pytest
import torch

import two_networks  # registers the "two-networks" test method (cmd's shape)
from vidssl.config import ConfigError, load_config
from vidssl.data.augment import ClipAugment
from vidssl.methods.base import backbone_spec, build_method, method_config, network_specs
from vidssl.models import NetworkSpec, build_backbone


def _model(*overrides):
    return load_config([], ["data.root=.", "model.backbone=r3d", "model.depth=10", "model.width=8", *overrides]).model


def _build(model):
    cfg = method_config(two_networks.NAME, {"name": two_networks.NAME, "clip_len": 4})
    return build_method(two_networks.NAME, backbone_spec(model).build(), cfg, 3, ClipAugment(crop_size=16),
                        model=model)


def test_extra_networks_are_built_from_the_declaration_under_the_config():
    # Undeclared keys: model.width; model.networks.NAME overrides any key of the declaration.
    method = _build(_model("model.networks.iframe.width=4"))
    assert list(method.named_networks()) == ["backbone", "iframe", "motion"]
    assert method.networks["iframe"].spec == NetworkSpec("r2d", width=4, depth=10, in_channels=3)
    assert method.networks["motion"].spec == NetworkSpec("r3d", width=8, depth=10, in_channels=2)
    assert method.backbone.spec == NetworkSpec("r3d", width=8, depth=10, in_channels=3)
    # Named submodules: trained, checkpointed and moved with the method.
    names = {n.split(".")[0] + "." + n.split(".")[1] for n, _ in method.named_parameters() if n.startswith("networks.")}
    assert names == {"networks.iframe", "networks.motion"}
    x = torch.rand(2, 3, 4, 16, 16)
    assert method.networks["motion"](x[:, :2]).shape == (2, method.networks["motion"].out_dim)
    with pytest.raises(ValueError, match="2 input channels"):
        method.networks["motion"](x)


def test_another_architecture_takes_its_own_default_depth():
    specs = network_specs(two_networks.NAME, _model("model.networks.iframe.backbone=c3d"))
    assert specs["iframe"] == NetworkSpec("c3d", width=8, depth=None, in_channels=3)
    specs = network_specs(two_networks.NAME, _model("model.networks.motion.backbone=r2plus1d"))
    assert specs["motion"] == NetworkSpec("r2plus1d", width=8, depth=18, in_channels=2)


@pytest.mark.parametrize("overrides,match", [
    (["model.networks.flow.width=4"], r"model.networks.flow: method 'two-networks' has no network 'flow' "
                                      r"\(its extra networks: iframe, motion\)"),
    (["model.networks.iframe.depth=12"], r"model.networks.iframe: .*depth must be one of"),
    (["model.networks.motion.in_channels=0"], r"model.networks.motion: .*in_channels must be a positive integer"),
    (["model.networks.iframe.backbone=r4d"], r"model.networks.iframe: unknown backbone 'r4d'"),
])
def test_bad_network_config_is_one_clear_error(overrides, match):
    with pytest.raises(ConfigError, match=match):
        network_specs(two_networks.NAME, _model(*overrides))


def test_unknown_network_key_is_refused_on_load():
    with pytest.raises(ConfigError, match="model.networks.iframe.widht"):
        _model("model.networks.iframe.widht=4")


def test_a_method_without_extra_networks_refuses_model_networks():
    assert network_specs("supervised", _model()) == {}
    with pytest.raises(ConfigError, match=r"model.networks.iframe: method 'supervised' has no network .*none"):
        network_specs("supervised", _model("model.networks.iframe.width=4"))
    # And builds as before, its networks() the backbone alone.
    cfg = method_config("supervised", {"name": "supervised"})
    method = build_method("supervised", build_backbone("r3d", depth=10, width=8), cfg, 3, ClipAugment(crop_size=16))
    assert list(method.named_networks()) == ["backbone"]


def test_without_a_model_section_extra_networks_follow_the_backbone_width():
    cfg = method_config(two_networks.NAME, {"name": two_networks.NAME})
    method = build_method(two_networks.NAME, build_backbone("r3d", depth=10, width=4), cfg, 3, ClipAugment(crop_size=16))
    assert {n: m.spec.width for n, m in method.networks.items()} == {"iframe": 4, "motion": 4}
    with pytest.raises(ValueError, match="needs its network"):
        two_networks.TwoNetworks(build_backbone("r3d", depth=10, width=4), cfg, 3, ClipAugment(crop_size=16))
