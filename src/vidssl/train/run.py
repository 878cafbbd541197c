"""``vidssl pretrain``: build everything a config names, train it, leave a complete run directory.

Run directory (DESIGN.md): ``config.yaml`` (fully resolved), ``checkpoints/last.ckpt``,
``backbone.safetensors`` (plus ``NAME.safetensors`` for each extra network a method has, and
``networks.json`` describing every one), ``metrics.jsonl``, TensorBoard events under ``tb/``, and
``pretrain_summary.json`` (steps, wall time, skipped steps, bad videos).
"""
from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from vidssl.config import ConfigError, to_yaml
from vidssl.data.from_config import SPLIT_FILE, augment_from_config, catalog_from_config, frame_cache_from_config
from vidssl.io import write_json_atomic, write_text_atomic
from vidssl.methods.base import backbone_spec, build_method, method_config, network_specs
from vidssl.train.callbacks import AtomicCheckpointIO, JsonlMetrics
from vidssl.train.data import VideoDataModule
from vidssl.train.export import save_networks
from vidssl.train.module import MethodModule, StepPlan

# catalog_from_config and frame_cache_from_config live in vidssl.data.from_config; still importable
# from here, where they were first.
__all__ = ["pretrain", "build_trainer", "last_checkpoint", "resolve_precision", "cpu_has_native_bf16",
           "gpu_has_native_bf16", "catalog_from_config", "frame_cache_from_config"]

log = logging.getLogger(__name__)

# Lightning notes that manual optimisation checkpoints hold post-step weights: that is what a
# resumed run needs, so the note is noise here.
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")


def resolve_precision(precision: str, accelerator: str) -> str:
    """``auto``: bf16 autocast where the hardware computes bf16 natively, fp32 elsewhere.

    On GPUs that is bf16 where the GPU computes it natively (Ampere and later), else fp16 with
    loss scaling: V100s and T4s only emulate bf16, which torch still reports as "supported"
    unless asked without emulation. On CPUs it is bf16 only with AVX512-BF16 or AMX: measured on an
    AVX-512 Xeon without them, bf16 3D convolutions are emulated and a training step is 1.4-2x
    *slower* than fp32 (benchmarks/bench_train_step.py).
    """
    if precision != "auto":
        return precision
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        return "bf16-mixed" if gpu_has_native_bf16() else "16-mixed"
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def gpu_has_native_bf16() -> bool:
    """True when the current CUDA GPU computes bf16 in hardware (not the emulation torch also counts)."""
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch < 2.3 has no including_emulation and reports native support only
        return bool(torch.cuda.is_bf16_supported())


def cpu_has_native_bf16() -> bool:
    """True when the CPU advertises AVX512-BF16 or AMX-BF16 (Linux /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pretrain(cfg, *, resume: bool = False, callbacks: list[L.Callback] | None = None) -> Path:
    """Train ``cfg.method`` on ``cfg.data``; returns the run directory.

    ``callbacks`` are extra Lightning callbacks (e.g. early stopping, custom logging).
    """
    started = time.perf_counter()
    run_dir = Path(cfg.run_dir)
    last = last_checkpoint(run_dir, resume)
    tr = cfg.trainer
    if tr.threads:
        torch.set_num_threads(tr.threads)
    L.seed_everything(tr.seed, workers=True, verbose=False)

    # Validate the whole config before touching any data: a typo fails in a second, not later.
    method_name = cfg.method.get("name")
    if not method_name:
        raise ConfigError("method.name: missing (e.g. moco, supervised, pace)")
    mcfg = method_config(method_name, cfg.method)
    try:
        main_spec = backbone_spec(cfg.model).validate()
    except ValueError as err:
        raise ConfigError(f"model: {err}") from None
    extra_specs = network_specs(method_name, cfg.model)  # model.networks checked against the method's
    # A folder / csv dataset's data.test_fraction split is recorded here, for the run's evaluation.
    catalog = catalog_from_config(cfg.data, "train", split_file=run_dir / SPLIT_FILE)
    backbone = main_spec.build()
    augment = augment_from_config(cfg.augment)
    method = build_method(method_name, backbone, mcfg, len(catalog.classes), augment,
                          channels_last=tr.channels_last, model=cfg.model)
    if tr.channels_last:
        method = method.to(memory_format=torch.channels_last_3d)

    # Learning-rate scaling, steps per epoch and total steps depend on the number of processes,
    # which only the launched trainer knows: the module resolves the plan in setup().
    plan = StepPlan(base_lr=cfg.optim.lr, base_batch=cfg.optim.base_batch, batch_size=tr.batch_size,
                    samples_per_epoch=cfg.data.samples_per_epoch or len(catalog), max_epochs=tr.max_epochs,
                    max_steps=tr.max_steps)
    module = MethodModule(method, optim=cfg.optim, plan=plan, seed=tr.seed,
                          max_bad_fraction=cfg.data.max_bad_fraction, max_time_seconds=tr.max_time_seconds)
    # The method's requests name the signals it reads (Method.signals()); the cache is used where it matches.
    data = VideoDataModule(catalog, method.view_sampler(), batch_size=tr.batch_size,
                           num_workers=cfg.data.num_workers, frame_size=cfg.data.frame_size, seed=tr.seed,
                           samples_per_epoch=cfg.data.samples_per_epoch,
                           max_bad_fraction=cfg.data.max_bad_fraction, signals=_signals(cfg),
                           frame_cache=frame_cache_from_config(cfg.data), declared=method.signals(),
                           cache_dir=cfg.data.cache_dir, root=cfg.data.root, video_stream=cfg.data.video_stream)

    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", to_yaml(_with_networks(cfg, extra_specs)))
    trainer = build_trainer(tr, run_dir, callbacks, max_steps=tr.max_steps, max_time_seconds=tr.max_time_seconds)
    # weights_only: a checkpoint is tensors and plain containers; one that carries code is refused.
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None, weights_only=True)
    # Lightning saves every N steps; the end of the run (max_steps or max_time) is saved here.
    trainer.save_checkpoint(str(last), weights_only=False)  # the whole training state, for --resume
    # A spawn launcher set the plan up in its children only; this process then asks the trainer.
    world = module.world_size or trainer.num_devices * trainer.num_nodes
    lr, total_steps, spe = plan.resolve(world)
    if trainer.is_global_zero:
        save_networks(method, run_dir)  # backbone.safetensors, NAME.safetensors, networks.json
        summary = {
            "method": method_name, "steps": trainer.global_step, "total_steps": total_steps,
            "steps_per_epoch": spe, "lr": lr, "world_size": world,
            "wall_seconds": round(time.perf_counter() - started, 2),
            "skipped_steps": int(module.skipped_steps), "bad_videos": list(module.tally.bad_paths),
            "videos": len(catalog),
        }
        write_json_atomic(run_dir / "pretrain_summary.json", summary)
        if summary["bad_videos"]:
            log.warning("%d unreadable video(s) were skipped: %s", len(summary["bad_videos"]),
                        ", ".join(summary["bad_videos"][:10]))
    return run_dir


def last_checkpoint(run_dir: Path, resume: bool) -> Path:
    """``run_dir/checkpoints/last.ckpt``, checked against ``resume``: an existing run is never
    overwritten, and ``--resume`` needs a checkpoint."""
    last = Path(run_dir) / "checkpoints" / "last.ckpt"
    if last.exists() and not resume:
        raise FileExistsError(f"{run_dir} already holds a run ({last}); pass --resume to continue it "
                              f"or choose another run_dir")
    if resume and not last.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {last}")
    return last


def build_trainer(tr, run_dir: Path, callbacks: list[L.Callback] | None = None, *, max_steps: int | None = None,
                  max_time_seconds: float | None = None) -> L.Trainer:
    """The Lightning trainer of a run directory, as ``trainer:`` (``tr``) sets it up: devices, strategy,
    precision, atomic checkpoints in ``run_dir/checkpoints`` (``last.ckpt`` plus every
    ``checkpoint_every_n_steps``), ``metrics.jsonl``, TensorBoard under ``tb/``, ``callbacks`` after
    those. ``vidssl pretrain`` and ``vidssl finetune`` both train with it. The module stops the run
    at its own total steps; ``max_steps`` / ``max_time_seconds`` are Lightning's hard limits."""
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="step{step:07d}", save_last=True,
                                 save_top_k=0, every_n_train_steps=max(1, tr.checkpoint_every_n_steps),
                                 auto_insert_metric_name=False)
    callbacks = [checkpoint, JsonlMetrics(run_dir / "metrics.jsonl", tr.log_every_n_steps), *(callbacks or [])]
    if tr.progress:
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, tr.log_every_n_steps // 2)))
    return L.Trainer(
        accelerator=tr.accelerator, devices=tr.devices, num_nodes=tr.num_nodes,
        strategy=tr.strategy, sync_batchnorm=tr.sync_batchnorm,
        precision=resolve_precision(tr.precision, tr.accelerator),
        max_steps=max_steps or -1, max_epochs=-1,  # with max_epochs, the module stops at its total steps
        max_time={"seconds": max_time_seconds} if max_time_seconds else None,
        logger=TensorBoardLogger(save_dir=str(run_dir), name="tb", version=""),
        callbacks=callbacks, plugins=[AtomicCheckpointIO()], log_every_n_steps=tr.log_every_n_steps,
        enable_progress_bar=tr.progress, enable_model_summary=False, use_distributed_sampler=False,
        num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=str(run_dir),
    )


def _with_networks(cfg, specs):
    """``cfg`` with every extra network spelled out in ``model.networks`` (config.yaml is fully resolved)."""
    if not specs:
        return cfg
    import copy

    from vidssl.config import NetworkConfig

    cfg = copy.deepcopy(cfg)
    cfg.model.networks = {name: NetworkConfig(**spec.to_dict()) for name, spec in specs.items()}
    return cfg


def _signals(cfg):
    """Legacy ``data.signals``: float32 per-clip arrays by name for a method reading the old interface
    (the built-in methods declare their signals instead, so none of them needs this key)."""
    if not cfg.data.signals:
        return None
    from vidssl.data.signals import build_signals  # motion signals (vectors, flow, maps)

    try:
        return build_signals(list(cfg.data.signals), cache_dir=cfg.data.cache_dir, root=cfg.data.root,
                             frame_size=tuple(cfg.data.frame_size) if cfg.data.frame_size else None,
                             flow_method=None, flow_dtype=None, video_stream=cfg.data.video_stream)
    except ValueError as err:
        raise ConfigError(f"data.signals: {err}") from None


