"""The Method interface every pretext task implements.

A method is a small ``nn.Module`` that owns its networks, its heads (and momentum encoder or
queue, if any) and turns one batch into losses. The trainer knows nothing else about it:

- ``Config``: a dataclass of the method's own keys. ``build_method`` validates the user's
  ``method:`` section against it, so an unknown or mistyped key is one clear error.
- Networks: ``self.backbone`` is built from the ``model:`` section and is the network a user
  evaluates (``backbone.safetensors``). A method that needs more (cmd's I- and M-networks)
  declares them in ``extra_networks``, name -> spec (backbone, width, depth, in_channels);
  ``model.networks.NAME`` overrides any key of a declaration, ``build_method`` builds them and
  hands them to ``__init__`` as ``networks``, and they live in ``self.networks[NAME]``. The
  trainer exports each one beside the backbone as ``NAME.safetensors``, described in
  ``networks.json`` so ``backbone_from_run(run_dir, network=NAME)`` can rebuild it.
- ``view_sampler()``: the method's sampler, ``(VideoInfo, rng) -> Requests``
  (:mod:`vidssl.data.views`): named requests per video (a stream and its frame indices: ``rgb``,
  ``iframe``, ``flow``, ``motion_map``, ``motion_vectors``) and labels such as the pace class.
  ``signals()`` declares the signal streams those requests read (``vidssl.data.signals.Signal``:
  stream, flow method, dtype), so the data module matches them against the cache before
  training; ``data.signals`` is not needed. Signals arrive dequantised to float32
  (``dequantize_batch``, run by the trainer after the batch reaches the device).
- ``forward(batch) -> dict``: ``"loss"`` is optimised, every other entry is logged. A
  second-order term (MCL) calls ``torch.autograd.grad(..., create_graph=True)`` in here.

Batches come straight from the collate function: ``batch["clips"]`` is uint8
[B, V, T, H, W, 3] on the device, augmented here on the device (DESIGN.md data flow), and
``batch["generator"]`` is a ``torch.Generator`` seeded from (seed, global step) by the trainer
so augmentation and shuffles reproduce exactly, also after a resume. ``batch["step"]`` (int, the
optimiser steps taken before this batch) and ``batch["epoch"]`` (float, batches seen / steps per
epoch: 0.5 is half-way through the first epoch) say where training is, for a loss weight that
changes over training (MCL: ``2.0 if batch["epoch"] < 5 else 1.0``); a resumed run sees the
values an uninterrupted one would have.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from vidssl.data.augment import ClipAugment
from vidssl.models.backbones import NetworkSpec

__all__ = ["Method", "METHODS", "register", "build_method", "method_config", "method_class", "network_specs",
           "backbone_spec"]

METHODS: dict[str, type["Method"]] = {}


def register(cls: type["Method"]) -> type["Method"]:
    """Class decorator: make a method available by its ``name`` in configs and the CLI."""
    METHODS[cls.name] = cls
    return cls


class Method(nn.Module):
    name: ClassVar[str] = ""
    # Networks besides the backbone, e.g. {"iframe": {"backbone": "r2d", "depth": 10},
    # "motion": {"backbone": "r3d", "depth": 10, "in_channels": 2}}. Keys left out: width is
    # model.width, in_channels 3, depth the architecture's default. A method declaring any takes
    # ``networks`` in its __init__ and passes it on here.
    extra_networks: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    @dataclasses.dataclass
    class Config:
        pass

    def __init__(self, backbone: nn.Module, cfg: Any, num_classes: int, augment: ClipAugment,
                 channels_last: bool = False, networks: Mapping[str, nn.Module] | None = None):
        super().__init__()
        self.backbone = backbone
        networks = dict(networks or {})
        missing = [n for n in self.extra_networks if n not in networks]
        if missing:
            raise ValueError(f"method {self.name!r} needs its network(s) {', '.join(missing)}: build it with "
                             f"build_method(..., model=cfg.model), or pass networks={{name: module}}")
        self.networks = nn.ModuleDict(networks)
        self.cfg = cfg
        self.num_classes = num_classes
        self.augment = augment
        self.channels_last = channels_last

    def named_networks(self) -> dict[str, nn.Module]:
        """Every network the method trains, by its export name: ``backbone`` first."""
        return {"backbone": self.backbone, **self.networks}

    def view_sampler(self):
        raise NotImplementedError

    @classmethod
    def network_input(cls, network: str, cfg: Any):
        """How evaluation feeds extra network ``network`` if it does not take RGB clips: a
        ``vidssl.eval.features.ClipInput`` built from the method's ``cfg``, or None (it cannot be scored)."""
        return None

    def signals(self) -> tuple:
        """The signals the sampler's requests read (``vidssl.data.signals.Signal``); none by default."""
        return ()

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    # -- shared helpers ---------------------------------------------------------------
    def augment_views(self, clips: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 [B, V, T, H, W, 3] -> float [B*V, 3, T, crop, crop], view-major within a video.

        Every view gets its own crop/flip/colour (MoCo's two augmentations); a clip's frames share
        them unless the augmentation is per-frame. Output is in the backbone's memory format.
        """
        x = self.augment(clips.flatten(0, 1), generator=generator)
        return self.to_backbone_format(x)

    def to_backbone_format(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last_3d) if self.channels_last and x.dim() == 5 else x


def method_config(name: str, section: Mapping[str, Any] | None) -> Any:
    """Validate a ``method:`` config section against the method's ``Config`` dataclass."""
    from vidssl.config import validate_section

    return validate_section(method_class(name).Config, section or {}, prefix="method")


def backbone_spec(model: Any) -> NetworkSpec:
    """The main backbone of a ``model:`` section (ModelConfig, DictConfig or dict)."""
    return NetworkSpec(_get(model, "backbone", "r3d"), width=_get(model, "width", 64),
                       depth=_get(model, "depth", None), in_channels=_get(model, "in_channels", 3))


def network_specs(name: str, model: Any = None) -> dict[str, NetworkSpec]:
    """Method ``name``'s extra networks as they will be built: each declaration in its
    ``extra_networks`` under the ``model.networks.NAME`` override, validated.

    ``model`` is the ``model:`` section (ModelConfig, DictConfig or dict; None: the defaults).
    An override of a network the method does not declare, or a spec ``build_backbone`` would
    refuse, is a :class:`ConfigError` naming ``model.networks.NAME``.
    """
    from vidssl.config import ConfigError

    declared = method_class(name).extra_networks
    overrides = _get(model, "networks", None) or {}
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        known = ", ".join(declared) if declared else "none"
        raise ConfigError(f"model.networks.{unknown[0]}: method {name!r} has no network {unknown[0]!r} "
                          f"(its extra networks: {known})")
    specs = {}
    for net, base in declared.items():
        if net == "backbone" or not net.isidentifier():
            raise ValueError(f"method {name!r}: network name {net!r} must be an identifier other than 'backbone'")
        spec = {"width": _get(model, "width", 64), "depth": None, "in_channels": 3, **dict(base)}
        given = {k: v for k, v in _as_dict(overrides.get(net)).items() if v is not None}
        if "backbone" in given and given["backbone"] != spec.get("backbone") and "depth" not in given:
            spec["depth"] = None  # another architecture: its own default depth
        spec.update(given)
        try:
            specs[net] = NetworkSpec.from_dict(spec, where=f"model.networks.{net}").validate()
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model.networks.{net}: {err}") from None
    return specs


def build_method(name: str, backbone: nn.Module, cfg: Any, num_classes: int, augment: ClipAugment,
                 channels_last: bool = False, *, model: Any = None) -> Method:
    """Method ``name`` on ``backbone`` with its ``cfg`` (from :func:`method_config`).

    Its extra networks (if it declares any) are built here from :func:`network_specs` of
    ``model``, the ``model:`` section; without one, at the backbone's width.
    """
    cls = method_class(name)
    if model is None:
        spec = getattr(backbone, "spec", None)
        model = {"width": spec.width if spec is not None else 64}
    specs = network_specs(name, model)
    if not specs:  # methods without extra networks keep their plain __init__
        return cls(backbone, cfg, num_classes, augment, channels_last=channels_last)
    networks = {net: spec.build() for net, spec in specs.items()}
    return cls(backbone, cfg, num_classes, augment, channels_last=channels_last, networks=networks)


def method_class(name: str) -> type[Method]:
    """The registered class of method ``name`` (``KeyError`` naming the available ones)."""
    if name not in METHODS:
        _import_builtin_methods()
    if name not in METHODS:
        raise KeyError(f"method.name: unknown method {name!r}; available: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def _as_dict(section: Any) -> dict[str, Any]:
    if section is None:
        return {}
    return dataclasses.asdict(section) if dataclasses.is_dataclass(section) else dict(section)


def _get(section: Any, key: str, default: Any) -> Any:
    """``section.key`` of a dataclass, DictConfig or dict (``default`` when absent or None)."""
    if section is None:
        return default
    value = section.get(key, default) if isinstance(section, Mapping) else getattr(section, key, default)
    return default if value is None else value


def _import_builtin_methods() -> None:
    # Importing a method module registers it; optional ones may not exist yet in a checkout.
    import importlib

    for module in ("supervised", "moco", "pace", "dsm", "mcl", "cmd"):
        try:
            importlib.import_module(f"vidssl.methods.{module}")
        except ModuleNotFoundError as err:
            if err.name != f"vidssl.methods.{module}":
                raise
