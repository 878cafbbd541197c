"""What the config keys' values may be: ranges and choices, checked on load, each error naming its key.

OmegaConf checks types (an integer where an integer belongs); a type cannot say that a batch size
is positive, a learning rate above zero, a probability within [0, 1] or a frame size two positive
integers. Unchecked, such values fail far from their key (a negative batch size surfaced as
"Invalid learning rate: -9.375e-05" from the optimiser, a negative step count as a Lightning
traceback) or not at all (a zero learning rate trains nothing). ``first_problem`` returns the first
value that breaks its check as one line naming the key, what it takes and an example.

``KEY_CHECKS`` covers the shared schema (``vidssl.config``); ``SECTION_CHECKS`` the free-form
sections a component validates itself (``method:``), by the key names the methods share.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Mapping

from omegaconf import DictConfig, ListConfig, OmegaConf

__all__ = ["Check", "KEY_CHECKS", "SECTION_CHECKS", "first_problem", "format_value"]

Check = tuple[Callable[[Any], bool], str]  # (test of the value, what the key takes)

_ABSENT = object()


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _list(v: Any) -> bool:
    return isinstance(v, (list, tuple))


POSITIVE_INT: Check = (lambda v: _int(v) and v >= 1, "a positive integer")
NON_NEGATIVE_INT: Check = (lambda v: _int(v) and v >= 0, "an integer >= 0")
POSITIVE: Check = (lambda v: _number(v) and v > 0, "a number > 0")
NON_NEGATIVE: Check = (lambda v: _number(v) and v >= 0, "a number >= 0")
PROBABILITY: Check = (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]")
DROPOUT: Check = (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)")
MOMENTUM: Check = (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)")
SIZE: Check = (lambda v: _list(v) and len(v) == 2 and all(_int(x) and x >= 1 for x in v),
               "[H, W], two positive integers")
SCALE: Check = (lambda v: _list(v) and len(v) == 2 and all(_number(x) for x in v) and 0 < v[0] <= v[1] <= 1,
                "[min, max] with 0 < min <= max <= 1 (the crop's share of the frame area)")
RATIO: Check = (lambda v: _list(v) and len(v) == 2 and all(_number(x) for x in v) and 0 < v[0] <= v[1],
                "[min, max] with 0 < min <= max (the crop's aspect ratio range)")
JITTER: Check = (lambda v: _list(v) and len(v) == 4 and all(_number(x) and x >= 0 for x in v),
                 "[brightness, contrast, saturation, hue], four numbers >= 0")
KS: Check = (lambda v: _list(v) and len(v) >= 1 and all(_int(x) and x >= 1 for x in v),
             "a non-empty list of positive integers")
EPOCH_LIST: Check = (lambda v: _list(v) and all(_int(x) and x >= 1 for x in v), "a list of positive integers")
LABEL_FRACTION: Check = (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]")


def one_of(*choices: str) -> Check:
    return (lambda v: v in choices, "one of " + " | ".join(choices))


def optional(check: Check) -> Check:
    test, want = check
    return (lambda v: v is None or test(v), f"{want}, or null")


# Precision names Lightning accepts, plus vidssl's "auto" (vidssl.train.run.resolve_precision).
PRECISIONS = ("auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", "32", "16", "bf16",
              "64")

KEY_CHECKS: dict[str, Check] = {
    "data.split": POSITIVE_INT,
    "data.frame_size": SIZE,
    "data.num_workers": NON_NEGATIVE_INT,
    "data.samples_per_epoch": optional(POSITIVE_INT),
    "data.max_bad_fraction": (PROBABILITY[0], "a number in [0, 1] (the share of unreadable videos a job "
                                              "tolerates)"),
    "data.split_seed": NON_NEGATIVE_INT,
    "data.video_stream": optional(NON_NEGATIVE_INT),
    "augment.crop_size": POSITIVE_INT,
    "augment.scale": SCALE,
    "augment.ratio": RATIO,
    "augment.hflip_p": PROBABILITY,
    "augment.jitter": JITTER,
    "augment.jitter_p": PROBABILITY,
    "augment.gray_p": PROBABILITY,
    "augment.blur_p": PROBABILITY,
    "model.width": POSITIVE_INT,
    "model.depth": optional(POSITIVE_INT),
    "model.in_channels": POSITIVE_INT,
    "optim.name": one_of("sgd", "adamw"),
    "optim.lr": (POSITIVE[0], "a number > 0 (the learning rate at optim.base_batch)"),
    "optim.base_batch": POSITIVE_INT,
    "optim.momentum": MOMENTUM,
    "optim.weight_decay": NON_NEGATIVE,
    "optim.schedule": one_of("cosine", "step", "constant"),
    "optim.warmup_epochs": NON_NEGATIVE,
    "optim.step_epochs": EPOCH_LIST,
    "optim.gamma": POSITIVE,
    "optim.grad_clip": optional(POSITIVE),
    "trainer.batch_size": (POSITIVE_INT[0], "a positive integer (clips per device and step)"),
    "trainer.max_epochs": POSITIVE_INT,
    "trainer.max_steps": optional(POSITIVE_INT),
    "trainer.max_time_seconds": optional(POSITIVE),
    "trainer.precision": one_of(*PRECISIONS),
    "trainer.num_nodes": POSITIVE_INT,
    "trainer.checkpoint_every_n_steps": POSITIVE_INT,
    "trainer.log_every_n_steps": POSITIVE_INT,
    "trainer.seed": NON_NEGATIVE_INT,
    "trainer.threads": optional(POSITIVE_INT),
    "eval.clip_len": POSITIVE_INT,
    "eval.stride": POSITIVE_INT,
    "eval.num_clips": POSITIVE_INT,
    "eval.stage": one_of("p1", "p2", "p3", "p4", "p5"),
    "eval.batch_size": POSITIVE_INT,
    "eval.linear": one_of("logreg", "svm"),
    "eval.ks": KS,
    "eval.protocol": one_of("video", "clips"),
    "eval.clip_pool": optional((lambda v: _list(v) and len(v) == 3 and all(_int(x) and x >= 1 for x in v),
                                "three positive integers (T, H, W), e.g. [2, 7, 7]")),
    # vidssl finetune's section (vidssl.config.FinetuneConfig), where the schema has it.
    "finetune.epochs": POSITIVE_INT,
    "finetune.max_steps": optional(POSITIVE_INT),
    "finetune.batch_size": POSITIVE_INT,
    "finetune.samples_per_epoch": optional(POSITIVE_INT),
    "finetune.optimizer": one_of("sgd", "adamw"),
    "finetune.lr": POSITIVE,
    "finetune.base_batch": POSITIVE_INT,
    "finetune.lr_scaling": one_of("linear", "none"),
    "finetune.momentum": MOMENTUM,
    "finetune.weight_decay": NON_NEGATIVE,
    "finetune.schedule": one_of("cosine", "step", "constant"),
    "finetune.warmup_epochs": NON_NEGATIVE,
    "finetune.step_epochs": EPOCH_LIST,
    "finetune.gamma": POSITIVE,
    "finetune.grad_clip": optional(POSITIVE),
    "finetune.dropout": DROPOUT,
    "finetune.clip_len": optional(POSITIVE_INT),
    "finetune.stride": optional(POSITIVE_INT),
    "finetune.num_clips": POSITIVE_INT,
    "finetune.spatial_crops": (lambda v: v in (1, 3) and _int(v), "1 (the centre crop) or 3"),
    "finetune.test_batch_size": POSITIVE_INT,
    "finetune.test_every_n_epochs": POSITIVE_INT,
    "finetune.label_fraction": optional(LABEL_FRACTION),
    "finetune.label_seed": NON_NEGATIVE_INT,
}

# Free-form sections, keyed by the names their components share (each method's Config dataclass
# declares its own keys; these are the ones several methods have, with one meaning).
SECTION_CHECKS: dict[str, dict[str, Check]] = {
    "method": {
        "clip_len": POSITIVE_INT,
        "stride": POSITIVE_INT,
        "queue_size": POSITIVE_INT,
        "momentum": PROBABILITY,
        "temperature": POSITIVE,
        "proj_hidden": optional(POSITIVE_INT),
        "proj_dim": POSITIVE_INT,
        "shuffle_bn_splits": POSITIVE_INT,
        "dropout": DROPOUT,
    },
}


def first_problem(cfg: DictConfig, checks: Mapping[str, Check], *, defaults: DictConfig | None = None,
                  prefix: str = "") -> str | None:
    """The first key of ``cfg`` whose value fails its check, as one line; ``None`` when all pass.

    Keys absent from ``cfg`` are skipped (a schema without a ``finetune:`` section). ``defaults``
    (the schema with its default values) supplies the example in the message; ``prefix`` is
    prepended to the keys named (``method`` for a method section checked on its own).
    """
    for key, (test, want) in checks.items():
        value = _value(cfg, key)
        if value is _ABSENT or test(value):
            continue
        name = f"{prefix}.{key}" if prefix else key
        example = _value(defaults, key) if defaults is not None else _ABSENT
        hint = (f"; e.g. {name}={format_value(example)}" if example not in (_ABSENT, None) and test(example)
                else "")
        return f"{name}: must be {want}, got {format_value(value)}{hint}"
    return None


def _value(cfg: DictConfig | None, key: str) -> Any:
    if cfg is None:
        return _ABSENT
    node = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


def format_value(value: Any) -> str:
    """A value as a ``key=value`` override writes it: ``[64,64]``, ``null``, ``0.1``."""
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)
