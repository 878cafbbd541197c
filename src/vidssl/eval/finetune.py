"""``vidssl finetune``: the papers' main protocol, supervised fine-tuning of a pretrained backbone.

The backbone of a pretraining run (``backbone.safetensors``, or any RGB network of
``networks.json``), or a random initialisation of the same spec (``from_scratch``), gets a new
linear classifier behind dropout, and the whole network is trained with cross-entropy on the
labelled train list of the split, then scored on its test list(s). CMD (Huang et al., CVPR 2021,
"Finetuning settings") gives the defaults (``vidssl.config.FinetuneConfig``): SGD, lr = 0.0001 x B,
cosine annealing, dropout 0.3, "we uniformly sample 10 clips in a video and average their scores".
The scores averaged are softmax probabilities, as Pace Prediction (ECCV 2020, "Evaluation") spells
out: "10 clips uniformly ... center crop ... averaging the softmax probabilities of all clips"
(``vidssl.eval.features.extract_features`` with the classifier's softmax as its clip head;
optionally over 3 spatial crops too).

Training is ``vidssl pretrain``'s: the same ``MethodModule`` (optimiser, schedule, precision,
skipped steps), data module, resumable sampler and Lightning trainer (``build_trainer``), so it runs
on one CPU or many GPUs under DDP with the run's ``trainer:`` settings, and ``--resume`` continues
from ``checkpoints/last.ckpt`` exactly (dropout masks are drawn from the step's generator, not the
global RNG). The test lists are scored every ``test_every_n_epochs`` epochs and at the end, by a
callback whose history travels in the checkpoint; under DDP each process scores a share of the
videos. The output folder holds ``finetune.json`` (written atomically after every scoring),
``finetune.png`` (the curves), the fine-tuned ``backbone.safetensors`` and ``classifier.safetensors``,
``config.yaml``, ``metrics.jsonl`` and the checkpoints.

``finetune.static`` trains on static clips (one random frame repeated, colour jitter per clip even
where the run jitters per frame) and ``finetune.label_fraction`` on a class-balanced subset of the
train list: the scene-bias diagnostic and the limited-label protocol of DSM
(``vidssl.eval.scene_bias``; ``vidssl.data.catalogs.class_balanced_subset``).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Mapping

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidssl.config import ConfigError, OptimConfig, as_dict, to_yaml
from vidssl.data.catalogs import Catalog, class_balanced_subset
from vidssl.data.from_config import SPLIT_FILE, augment_from_config, catalog_from_config, evaluation_catalogs, \
    frame_cache_from_config
from vidssl.data.views import RandomClips, StaticClips, UniformClips
from vidssl.eval.features import extract_features
from vidssl.eval.protocol import check_disjoint
from vidssl.io import atomic_path, write_bytes_atomic, write_json_atomic, write_text_atomic
from vidssl.methods.base import Method, backbone_spec
from vidssl.train.export import backbone_from_run, check_run_dir, run_network_specs, save_networks
from vidssl.train.module import MethodModule, StepPlan

__all__ = ["finetune", "FineTuneClassifier", "TestScoring", "topk_metrics", "default_out_dir", "check_run_dir",
           "check_overrides", "recorded_config", "curve_png", "FINETUNE_FILE"]

FINETUNE_FILE = "finetune.json"
# trainer.* keys a fine-tune does not read: its budget and batch are finetune.*.
_TRAINER_BUDGET = {"trainer.batch_size": "finetune.batch_size", "trainer.max_epochs": "finetune.epochs",
                   "trainer.max_steps": "finetune.max_steps", "trainer.max_time_seconds": "finetune.max_steps"}


class FineTuneClassifier(Method):
    """Backbone -> dropout -> linear classifier, trained with cross-entropy on ``batch["clips"]``.

    Dropout is drawn from the step's generator (``batch["generator"]``), so a resumed run drops
    the same units an uninterrupted one would have.
    """
    name = "finetune"

    def __init__(self, backbone: nn.Module, num_classes: int, augment, *, dropout: float, sampler,
                 channels_last: bool = False):
        super().__init__(backbone, None, num_classes, augment, channels_last)
        if num_classes < 2:
            raise ValueError(f"fine-tuning needs at least 2 classes, got {num_classes}")
        self.dropout = float(dropout)
        self.sampler = sampler
        self.classifier = nn.Linear(backbone.out_dim, num_classes)

    def view_sampler(self):
        return self.sampler

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        generator = batch.get("generator")
        x = self.augment_views(batch["clips"], generator)
        features = self.backbone(x)
        if self.dropout > 0:
            keep = torch.rand(features.shape, generator=generator) >= self.dropout  # on the CPU, like every draw
            features = features * keep.to(features.device, non_blocking=True) / (1.0 - self.dropout)
        logits = self.classifier(features).float()
        labels = batch["label"]
        return {"loss": F.cross_entropy(logits, labels), "train_acc": (logits.argmax(1) == labels).float().mean() * 100}


class _UnscaledPlan(StepPlan):
    """``finetune.lr_scaling=none``: the learning rate as given, whatever the global batch (DSM's 0.1)."""

    def resolve(self, world_size: int) -> tuple[float, int, int]:
        _, total, spe = super().resolve(world_size)
        return self.base_lr, total, spe


def topk_metrics(scores: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Top-1 and top-5 (top-K for fewer classes) of class ``scores`` [N, K] in percent, and top-1 per
    class ({name: % or None without test videos}). Ties go to the lower class index."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if len(scores) == 0:
        raise ValueError("no test videos were scored")
    k = min(5, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")
    top1 = order[:, 0] == labels
    topk = (order[:, :k] == labels[:, None]).any(axis=1)
    per_class = {name: (float(100.0 * top1[labels == c].mean()) if (labels == c).any() else None)
                 for c, name in enumerate(classes)}
    return {"top1": float(100.0 * top1.mean()), "top5": float(100.0 * topk.mean()), "per_class_top1": per_class,
            "videos": int(len(labels))}


class TestScoring(L.Callback):
    """Scores the test lists every ``every`` epochs and at the last step; keeps the per-epoch history.

    Its state (history, the running loss of the current epoch) is saved in every checkpoint, and
    it runs before the checkpoint callback (Lightning runs those last), so the history of a
    resumed run is that of the uninterrupted one. ``on_scored(self)`` is called on rank 0 at the end
    of every epoch (``finetune()`` rewrites finetune.json there).
    """

    def __init__(self, tests: Mapping[str, Catalog], classes: list[str], *, clip_len: int, stride: int,
                 num_clips: int, spatial_crops: int, static: bool, frame_size, crop_size: int, batch_size: int,
                 num_workers: int, frame_cache, max_bad_fraction: float, every: int = 1, bf16: bool = False,
                 progress: bool = False, on_scored=None):
        self.tests = dict(tests)
        self.classes = list(classes)
        self.sampler = UniformClips(num_clips=num_clips, clip_len=clip_len, stride=stride, static=static)
        self.extract = dict(frame_size=tuple(frame_size) if frame_size else None, crop_size=crop_size,
                            batch_size=batch_size, num_workers=num_workers, frame_cache=frame_cache,
                            max_bad_fraction=max_bad_fraction, spatial_crops=spatial_crops, bf16=bf16)
        self.every = max(1, int(every))
        self.progress = progress
        self.on_scored = on_scored
        self.history: list[dict] = []
        self.final: dict | None = None  # the last scoring, per-class numbers included
        self._loss_sum, self._acc_sum, self._count = 0.0, 0.0, 0

    # -- Lightning hooks --------------------------------------------------------------------
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
        if loss is not None and bool(torch.isfinite(loss)):  # a skipped step's loss is not averaged in
            self._loss_sum += float(loss)
            self._acc_sum += _metric(trainer, "train/train_acc")
            self._count += 1
        seen, spe = int(pl_module.batches_seen), int(pl_module.steps_per_epoch)
        last = trainer.global_step >= int(pl_module.total_steps)
        if seen % spe == 0 or last:
            self._end_epoch(trainer, pl_module, seen / spe, last)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "final": self.final, "loss_sum": self._loss_sum,
                "acc_sum": self._acc_sum, "count": self._count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state.get("history", []))
        self.final = state.get("final")
        self._loss_sum, self._acc_sum = float(state.get("loss_sum", 0.0)), float(state.get("acc_sum", 0.0))
        self._count = int(state.get("count", 0))

    # -- pieces -------------------------------------------------------------------------------
    def _end_epoch(self, trainer, pl_module, epoch: float, last: bool) -> None:
        sums = torch.tensor([self._loss_sum, self._acc_sum, float(self._count)], dtype=torch.float64)
        sums = trainer.strategy.reduce(sums.to(pl_module.device), reduce_op="sum").cpu()  # over the processes
        record = {"epoch": round(epoch, 4), "step": int(trainer.global_step),
                  "train_loss": float(sums[0] / sums[2]) if sums[2] else None,
                  "train_acc": float(sums[1] / sums[2]) if sums[2] else None,
                  "lr": _metric(trainer, "train/lr")}  # of the epoch's last step
        self._loss_sum, self._acc_sum, self._count = 0.0, 0.0, 0
        if last or round(epoch) % self.every == 0 and float(epoch).is_integer():
            results = self.score(pl_module.method, trainer)
            record["test"] = {name: {"top1": r["top1"], "top5": r["top5"]} for name, r in results.items()}
            self.final = {"epoch": record["epoch"], "step": record["step"], "test": results}
        self.history.append(record)
        if trainer.is_global_zero and self.on_scored is not None:
            self.on_scored(self)

    def score(self, method: FineTuneClassifier, trainer=None) -> dict[str, dict]:
        """Top-1 / top-5 / per-class top-1 of each test list; each process scores every world-th video."""
        rank = trainer.global_rank if trainer is not None else 0
        world = trainer.world_size if trainer is not None else 1
        classifier = method.classifier

        def softmax_scores(features: torch.Tensor) -> torch.Tensor:  # per clip, averaged by extract_features
            return torch.softmax(F.linear(features, classifier.weight.float(), classifier.bias.float()), dim=1)

        results = {}
        for name, catalog in self.tests.items():
            share = catalog if world == 1 else catalog.subset(range(rank, len(catalog), world), f"rank{rank}")
            scored = extract_features(method.backbone, share, sampler=self.sampler, device=classifier.weight.device,
                                      clip_head=softmax_scores, progress=self.progress and rank == 0,
                                      desc=f"test {name}", **self.extract)
            scores, labels, skipped = scored.features, scored.labels, scored.skipped
            if world > 1:
                gathered = [None] * world
                torch.distributed.all_gather_object(gathered, (scores, labels, skipped))
                scores = np.concatenate([g[0] for g in gathered])
                labels = np.concatenate([g[1] for g in gathered])
                skipped = [p for g in gathered for p in g[2]]
            results[name] = {**topk_metrics(scores, labels, self.classes), "skipped": list(skipped)}
        return results


def default_out_dir(run_dir: Path | None, *, network: str = "backbone", from_scratch: bool = False,
                    label_fraction: float | None = None, static: bool = False) -> Path:
    """``RUN_DIR/finetune[-scratch][-NETWORK][-labelsPCT][-static]`` (``runs/finetune...`` without a run)."""
    name = "finetune" + ("-scratch" if from_scratch else "") + ("" if network == "backbone" else f"-{network}")
    if label_fraction is not None and float(label_fraction) < 1.0:
        name += f"-labels{100 * float(label_fraction):g}"
    name += "-static" if static else ""
    return (Path(run_dir) if run_dir is not None else Path("runs")) / name


def check_overrides(overrides) -> None:
    """A ``trainer.batch_size=``-style override would be silently ignored: point at the finetune key."""
    for override in overrides:
        key = override.split("=", 1)[0]
        if key in _TRAINER_BUDGET:
            raise ConfigError(f"{key}: fine-tuning reads its budget from the finetune section; use "
                              f"{_TRAINER_BUDGET[key]}")


def finetune(cfg, *, run_dir: str | Path | None, out_dir: str | Path, network: str = "backbone",
             from_scratch: bool = False, resume: bool = False, callbacks: list[L.Callback] | None = None) -> Path:
    """Fine-tune network ``network`` of ``run_dir`` (or a random init of it, or of ``cfg.model`` when
    ``run_dir`` is None) as ``cfg.finetune`` says; returns ``out_dir``. ``cfg`` is a
    ``FinetuneRunConfig`` (the run's config.yaml, recipes and overrides; ``vidssl finetune`` loads it).

    Raises ConfigError / ValueError / FileNotFoundError / FileExistsError naming the key or path.
    """
    from vidssl.train.data import VideoDataModule
    from vidssl.train.run import build_trainer, last_checkpoint, resolve_precision

    started = time.perf_counter()
    ft, tr = cfg.finetune, cfg.trainer  # values range-checked by load_config (vidssl.config_checks)
    run_dir = Path(run_dir) if run_dir is not None else None
    out_dir = Path(out_dir)
    spec = _network_spec(run_dir, network, cfg)  # checks the run directory before any data is read
    last = last_checkpoint(out_dir, resume)
    if tr.threads:
        torch.set_num_threads(tr.threads)
    L.seed_everything(tr.seed, workers=True, verbose=False)

    clip_len = ft.clip_len or cfg.method.get("clip_len") or cfg.eval.clip_len
    stride = ft.stride or cfg.method.get("stride") or cfg.eval.stride
    train, tests = _catalogs(cfg, run_dir, out_dir)
    labelled = class_balanced_subset(train, ft.label_fraction, seed=ft.label_seed) if ft.label_fraction else train
    if run_dir is not None and not from_scratch:
        backbone = backbone_from_run(run_dir, network=network)
    else:
        backbone = spec.build()  # after seeding: the random reference reproduces
    sampler = StaticClips(clip_len=clip_len) if ft.static else RandomClips(num_views=1, clip_len=clip_len, stride=stride)
    augment = augment_from_config(cfg.augment)
    if ft.static:  # per-frame colour jitter (pace's) would make the repeated frame flicker: motion again
        augment.per_frame_jitter = False
    method = FineTuneClassifier(backbone, len(train.classes), augment, dropout=ft.dropout, sampler=sampler,
                                channels_last=tr.channels_last)
    if tr.channels_last:
        method = method.to(memory_format=torch.channels_last_3d)
    plan_type = StepPlan if ft.lr_scaling == "linear" else _UnscaledPlan
    plan = plan_type(base_lr=ft.lr, base_batch=ft.base_batch, batch_size=ft.batch_size,
                     samples_per_epoch=ft.samples_per_epoch or len(labelled), max_epochs=ft.epochs,
                     max_steps=ft.max_steps)
    module = MethodModule(method, optim=_optim_config(ft), plan=plan, seed=tr.seed,
                          max_bad_fraction=cfg.data.max_bad_fraction)
    frame_cache = frame_cache_from_config(cfg.data)
    data = VideoDataModule(labelled, sampler, batch_size=ft.batch_size, num_workers=cfg.data.num_workers,
                           frame_size=cfg.data.frame_size, seed=tr.seed, samples_per_epoch=ft.samples_per_epoch,
                           max_bad_fraction=cfg.data.max_bad_fraction, frame_cache=frame_cache,
                           root=cfg.data.root, video_stream=cfg.data.video_stream)
    precision = resolve_precision(tr.precision, tr.accelerator)
    summary = {
        "format": "vidssl-finetune", "status": "running", "run_dir": str(run_dir) if run_dir else None,
        "network": network, "init": "scratch" if from_scratch or run_dir is None else "pretrained",
        "backbone": spec.describe(), "static": bool(ft.static), "static_test": bool(ft.static_test),
        "clip_len": int(clip_len), "stride": int(stride), "frame_size": list(cfg.data.frame_size or []),
        "crop_size": int(cfg.augment.crop_size), "num_clips": int(ft.num_clips), "spatial_crops": int(ft.spatial_crops),
        "classes": list(train.classes), "train_list": train.name, "train_videos": len(labelled),
        "label_fraction": ft.label_fraction, "labelled_per_class": _per_class(labelled),
        "test_lists": {name: len(c) for name, c in tests.items()}, "precision": precision,
        "config": recorded_config(cfg),
    }
    scoring = TestScoring(tests, train.classes, clip_len=clip_len, stride=stride, num_clips=ft.num_clips,
                          spatial_crops=ft.spatial_crops, static=ft.static_test, frame_size=cfg.data.frame_size,
                          crop_size=cfg.augment.crop_size, batch_size=ft.test_batch_size,
                          num_workers=cfg.data.num_workers, frame_cache=frame_cache,
                          max_bad_fraction=cfg.data.max_bad_fraction, every=ft.test_every_n_epochs,
                          bf16=precision.startswith("bf16"), progress=tr.progress,
                          on_scored=lambda s: write_json_atomic(out_dir / FINETUNE_FILE, _report(summary, s)))

    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "config.yaml", to_yaml(cfg))
    trainer = build_trainer(tr, out_dir, [scoring, *(callbacks or [])], max_steps=ft.max_steps)
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None, weights_only=True)
    trainer.save_checkpoint(str(last), weights_only=False)  # the whole training state, for --resume
    if scoring.final is None or scoring.final["step"] != trainer.global_step:  # stopped off the schedule
        scoring.final = {"epoch": round(int(module.batches_seen) / module.steps_per_epoch, 4),
                         "step": int(trainer.global_step), "test": scoring.score(method, trainer)}
    if trainer.is_global_zero:
        save_networks({"backbone": method.backbone}, out_dir)
        _save_classifier(method.classifier, out_dir / "classifier.safetensors")
        lr, total_steps, spe = plan.resolve(module.world_size or trainer.num_devices * trainer.num_nodes)
        summary.update(status="done", steps=int(trainer.global_step), total_steps=total_steps, steps_per_epoch=spe,
                       lr=lr, world_size=module.world_size or trainer.num_devices * trainer.num_nodes,
                       skipped_steps=int(module.skipped_steps), bad_videos=list(module.tally.bad_paths),
                       wall_seconds=round(time.perf_counter() - started, 2))
        report = _report(summary, scoring)
        write_json_atomic(out_dir / FINETUNE_FILE, report)
        write_bytes_atomic(out_dir / "finetune.png", curve_png(report))
    return out_dir


def curve_png(report: Mapping[str, Any]) -> bytes:
    """Training loss and test top-1 / top-5 per epoch, as PNG bytes (matplotlib, Agg canvas)."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = report["epochs"]
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot([e["epoch"] for e in epochs], [math.nan if e["train_loss"] is None else e["train_loss"] for e in epochs],
                 marker="o", ms=3)
    loss_ax.set(xlabel="epoch", ylabel="train loss (cross-entropy)", title="training")
    scored = [e for e in epochs if "test" in e]
    for name in report["test_lists"]:
        for metric, style in (("top1", "-"), ("top5", ":")):
            acc_ax.plot([e["epoch"] for e in scored], [e["test"][name][metric] for e in scored], style, marker="o",
                        ms=3, label=f"{name} {metric.replace('top', 'top-')}")
    acc_ax.set(xlabel="epoch", ylabel="%", ylim=(0, 101), title=f"test ({report['num_clips']} clips per video)")
    acc_ax.legend(fontsize=7)
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
    fig.suptitle(f"fine-tuning {report['backbone']} ({report['init']}{', static clips' if report['static'] else ''})",
                 fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


# -- helpers ----------------------------------------------------------------------------------
def _network_spec(run_dir: Path | None, network: str, cfg):
    """The spec of the network to fine-tune: the run's (networks.json / config.yaml), or ``cfg.model``."""
    if run_dir is None:
        if network != "backbone":
            raise ValueError("--network needs a RUN_DIR (the networks a pretraining run exported)")
        try:
            return backbone_spec(cfg.model).validate()
        except ValueError as err:
            raise ConfigError(f"model: {err}") from None
    check_run_dir(run_dir)
    specs = run_network_specs(run_dir)
    if network not in specs:
        raise KeyError(f"--network: {run_dir} has no network {network!r}; it has: {', '.join(specs)}")
    spec = specs[network]
    if spec is None:
        raise ValueError(f"{run_dir}: network {network!r} was exported without a spec; it cannot be rebuilt here")
    if spec.in_channels != 3:
        raise ValueError(f"--network {network}: {spec.describe()} takes {spec.in_channels}-channel input, not the "
                         f"RGB clips fine-tuning feeds it")
    weights = run_dir / f"{network}.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: missing (pretraining writes it when it finishes; resume the run with "
                                f"`vidssl pretrain --resume`)")
    return spec


def _catalogs(cfg, run_dir: Path | None, out_dir: Path) -> tuple[Catalog, dict[str, Catalog]]:
    """The labelled train list of ``data.split`` and every test list to score against it."""
    split_file = out_dir / SPLIT_FILE
    if run_dir is not None:
        from vidssl.config import load_config

        run_data = load_config([run_dir / "config.yaml"]).data
        if run_data.dataset != cfg.data.dataset and run_data.root == cfg.data.root:
            raise ConfigError(f"data.root: still {run_data.root}, the run's {run_data.dataset} videos; fine-tuning on "
                              f"data.dataset={cfg.data.dataset} needs its own (data.root=...)")
        # A folder / csv dataset's held-out split: the one the pretraining run recorded, when the data is the run's.
        if (run_dir / SPLIT_FILE).is_file() and as_dict(run_data) == as_dict(cfg.data):
            split_file = run_dir / SPLIT_FILE
    train = catalog_from_config(cfg.data, "train", split_file=split_file)
    lists = evaluation_catalogs(cfg.data, list(cfg.finetune.test_splits) or None, split_file=split_file)
    key = [(r.path, r.label) for r in train.records]
    for name, (gallery, _) in lists.items():
        if [(r.path, r.label) for r in gallery.records] != key:
            raise ConfigError(f"finetune.test_splits: {name}'s train list is not {train.name}, the one fine-tuned "
                              f"on; score it in its own fine-tune (data.split)")
    tests = {name: test for name, (_, test) in lists.items()}
    check_disjoint(train.paths(), {name: t.paths() for name, t in tests.items()})
    return train, tests


def _optim_config(ft) -> OptimConfig:
    return OptimConfig(name=ft.optimizer, lr=ft.lr, base_batch=ft.base_batch, momentum=ft.momentum,
                       nesterov=ft.nesterov, weight_decay=ft.weight_decay, schedule=ft.schedule,
                       warmup_epochs=ft.warmup_epochs, step_epochs=list(ft.step_epochs), gamma=ft.gamma,
                       grad_clip=ft.grad_clip)


def _metric(trainer, key: str) -> float:
    """The last logged value of ``key`` (NaN when it was not logged)."""
    value = trainer.callback_metrics.get(key)
    return float(value) if value is not None else math.nan


def _per_class(catalog: Catalog) -> dict[str, int]:
    counts = np.bincount(catalog.labels(), minlength=len(catalog.classes))
    return {name: int(n) for name, n in zip(catalog.classes, counts)}


def recorded_config(cfg) -> dict[str, Any]:
    """What decides a fine-tune's numbers (the scene-bias diagnostic reuses a finished one only if equal)."""
    full = as_dict(cfg)
    return {key: full[key] for key in ("finetune", "data", "augment", "trainer")}


def _report(summary: Mapping[str, Any], scoring: TestScoring) -> dict[str, Any]:
    return {**summary, "epochs": list(scoring.history), "final": scoring.final}


def _save_classifier(classifier: nn.Linear, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in classifier.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
