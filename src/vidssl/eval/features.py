"""Video-level features of a frozen backbone: the average over clips sampled uniformly in time.

The evaluation protocol shared by the papers: "we sample 10 video clips with a sliding
window, and use the average of their global features as the representation of the video"
(CMD, CVPR 2021, "Video retrieval settings"); Pace Prediction (ECCV 2020, sec. 4.4) takes
ten clips and the last pooling layer "p5"; MCL (ICCV 2021, sec. 4.2) averages clip features
for its linear protocol. Here ``num_clips`` clips of ``clip_len`` frames every ``stride``
frames are spread evenly over each video (``UniformClips``), centre-cropped and normalised
on the device (``eval_transform``), passed through the backbone in eval mode, and the
globally average-pooled map of ``stage`` ("p5", the last stage, or "p4", the one before it)
is averaged over the clips.

Unreadable videos are left out and listed in ``FeatureSet.skipped``; the extraction fails
only when their share exceeds the dataset's ``max_bad_fraction`` (DESIGN.md, "Conventions").
``save_features`` / ``load_features`` keep features on disk so retrieval and the linear
probe can be rerun without decoding a video again.
"""
from __future__ import annotations

from vidssl.io import atomic_path

import json
import os
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from vidssl.data.augment import eval_transform
from vidssl.data.catalogs import Catalog
from vidssl.data.dataset import BadVideoWarning, VideoDataset, collate
from vidssl.video.frame_cache import FrameCache
from vidssl.data.views import UniformClips
from vidssl.models.backbones.base import STAGES

__all__ = ["FeatureSet", "ClipInput", "extract_features", "ReadableBatches", "frozen", "save_features", "load_features"]


@dataclass
class FeatureSet:
    """Features of the readable videos of a catalog, in catalog order.

    Attributes:
        features: float32 [N, D], one row per video that could be read.
        labels: int64 [N], the catalog labels of those videos.
        paths: the N video paths, aligned with the rows.
        skipped: paths of the catalog's videos that could not be read (no row).
        meta: how the features were made (stage, clips, sizes, backbone, catalog), so a
            saved file says what it holds.
    """

    features: np.ndarray
    labels: np.ndarray
    paths: list[str]
    skipped: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.paths = [str(p) for p in self.paths]
        self.skipped = [str(p) for p in self.skipped]
        if self.features.ndim != 2:
            raise ValueError(f"features must be [N, D], got shape {self.features.shape}")
        if self.labels.shape != (len(self.features),) or len(self.paths) != len(self.features):
            raise ValueError(f"features ({len(self.features)} rows), labels {self.labels.shape} and "
                             f"paths ({len(self.paths)}) must have one entry per video")

    def __len__(self) -> int:
        return len(self.features)


@dataclass(frozen=True)
class ClipInput:
    """What a network that does not take RGB clips is fed at evaluation (cmd's M-network: motion
    vectors): ``num_clips`` clips of ``clip_len`` entries every ``stride`` frames of ``stream``, and
    ``transform(clips, crop_size=, frame_size=)`` turning a batch [N, T, ...] of them into the
    network's input [N, C, T, h, w] on their device (the counterpart of ``eval_transform``)."""

    stream: str
    clip_len: int
    stride: int
    transform: Callable[..., torch.Tensor]


def extract_features(
    backbone: nn.Module,
    catalog: Catalog,
    *,
    clip_len: int = 8,
    stride: int = 2,
    num_clips: int = 10,
    frame_size: tuple[int, int] | None = (64, 64),
    crop_size: int = 56,
    stage: str = "p5",
    batch_size: int = 32,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    bf16: bool = False,
    max_bad_fraction: float = 0.05,
    frame_cache: FrameCache | None = None,
    progress: bool = True,
    desc: str | None = None,
    spatial_crops: int = 1,
    sampler=None,
    clip_head=None,
    clip_input: ClipInput | None = None,
) -> FeatureSet:
    """Average of ``num_clips`` uniformly spaced clip features per video of ``catalog``.

    Args:
        backbone: a ``vidssl.models.Backbone``; moved to ``device`` and run in eval mode
            (its train/eval mode is restored afterwards).
        catalog: the videos; labels come from it.
        clip_len, stride, num_clips: the clips (``UniformClips``); deterministic.
        frame_size: (H, W) frames are resized to when decoded (``None``: native size, then
            every video must have the same size).
        crop_size: side of the centre crop fed to the backbone.
        stage: "p5" (the pooled last stage, the papers' default) or an earlier stage such as
            "p4", globally average-pooled over time and space.
        batch_size: videos per batch; the backbone sees ``batch_size * num_clips`` clips.
        num_workers: DataLoader worker processes decoding videos.
        device: where the transform and the backbone run.
        bf16: run the backbone under bfloat16 autocast (features are returned in float32).
        max_bad_fraction: share of unreadable videos tolerated before ``TooManyBadVideos``.
        frame_cache: decoded frames to read instead of decoding (``VideoDataset``).
        progress: show a tqdm bar; ``desc`` labels it (default: the catalog's name).
        spatial_crops: 1 (the centre crop) or 3: the centre and both ends of the frame's longer
            side (its width when square), the shorter side centred; features averaged over
            clips and crops (the 3-crop testing of fine-tuning protocols).
        sampler: the clips to take (default ``UniformClips(num_clips, clip_len, stride)``; e.g.
            ``UniformClips(..., static=True)`` for static test clips).
        clip_head: applied on the device to every clip's pooled float32 feature [n, D] before the
            average over clips and crops, e.g. a classifier's softmax, so the rows are averaged class
            scores (the fine-tuning test protocol) rather than features.
        clip_input: a non-RGB network's input (``ClipInput``): its stream, clip length and stride
            replace ``clip_len`` and ``stride``, its transform ``eval_transform``.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if spatial_crops not in (1, 3):
        raise ValueError(f"spatial_crops must be 1 or 3, got {spatial_crops!r}")
    device = torch.device(device)
    to_input = partial(eval_transform, crop_size=crop_size)
    if clip_input is not None:
        if sampler is not None or spatial_crops != 1:
            raise ValueError("clip_input takes neither a sampler nor spatial_crops: it says which clips to read")
        clip_len, stride = clip_input.clip_len, clip_input.stride
        sampler = UniformClips(num_clips=num_clips, clip_len=clip_len, stride=stride, stream=clip_input.stream)
        to_input = partial(clip_input.transform, crop_size=crop_size, frame_size=frame_size)
    sampler = sampler or UniformClips(num_clips=num_clips, clip_len=clip_len, stride=stride)
    rows: list[np.ndarray] = []
    kept: list[int] = []
    batches = ReadableBatches(catalog, sampler, batch_size=batch_size, num_workers=num_workers, device=device,
                               frame_size=frame_size, frame_cache=frame_cache, max_bad_fraction=max_bad_fraction,
                               progress=progress, desc=desc)
    with frozen(backbone, device):
        for clips, indices in batches:
            rows.append(_video_features(backbone, clips, to_input, crop_size, stage, device, bf16, spatial_crops,
                                        clip_head))
            kept += indices
    skipped = batches.skipped

    dim = backbone.stage_dims[stage] if hasattr(backbone, "stage_dims") else 0
    features = np.concatenate(rows) if rows else np.zeros((0, dim), dtype=np.float32)
    meta = {"catalog": catalog.name, "backbone": getattr(backbone, "name", type(backbone).__name__),
            "stage": stage, "num_clips": num_clips, "clip_len": clip_len, "stride": stride,
            "frame_size": list(frame_size) if frame_size is not None else None, "crop_size": crop_size,
            "spatial_crops": spatial_crops, **({"stream": clip_input.stream} if clip_input is not None else {})}
    return FeatureSet(features=features, labels=catalog.labels()[kept],
                      paths=[catalog.records[i].path for i in kept], skipped=skipped, meta=meta)


class ReadableBatches:
    """Iterate the readable videos of ``catalog`` in catalog order: ``(clips, indices)`` per batch,
    ``clips`` the uint8 [B, V, T, H, W, 3] of ``sampler``'s ``"clips"`` request and ``indices`` their
    catalog indices. Unreadable videos are left out and listed in ``skipped`` afterwards (one
    warning names them); more than ``max_bad_fraction`` of the catalog raises ``TooManyBadVideos``."""

    def __init__(self, catalog: Catalog, sampler, *, batch_size: int, num_workers: int, device: torch.device,
                 frame_size, frame_cache: FrameCache | None, max_bad_fraction: float, progress: bool,
                 desc: str | None):
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        self.catalog, self.progress = catalog, progress
        self.bar, self.label = desc or f"features {catalog.name}", desc or catalog.name
        self.dataset = VideoDataset(catalog, sampler, frame_size=frame_size, max_bad_fraction=max_bad_fraction,
                                    frame_cache=frame_cache)
        # Sequential order, so batch k holds catalog items k*batch_size.. and a served index that
        # differs from the requested one reveals a bad video the dataset replaced.
        self.loader = DataLoader(self.dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                 collate_fn=collate, pin_memory=device.type == "cuda")
        self.skipped: list[str] = []

    def __iter__(self):
        tally = self.dataset.make_tally()
        requested = 0
        for batch in tqdm(self.loader, desc=self.bar, unit="batch", disable=not self.progress, dynamic_ncols=True):
            n = len(batch["index"])
            wanted = torch.arange(requested, requested + n)
            requested += n
            ok = batch["index"] == wanted
            bad = [self.catalog.records[int(i)].path for i in wanted[~ok]]
            self.skipped += bad
            tally.update(bad, n)
            if ok.any():
                yield batch["clips"][ok], wanted[ok].tolist()
        tally.check()
        if self.skipped:  # within the limit: the job goes on without them, and says which
            more = f" and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
            warnings.warn(f"{self.label}: left out {len(self.skipped)} of {len(self.catalog)} videos that could not be "
                          f"read (within {tally.key}={tally.max_fraction:g}): {', '.join(self.skipped[:5])}{more}",
                          BadVideoWarning, stacklevel=3)


@contextmanager
def frozen(backbone: nn.Module, device: torch.device):
    """The backbone on ``device`` in eval mode under ``torch.inference_mode``; its mode is restored after."""
    was_training = backbone.training
    backbone.to(device).eval()
    try:
        with torch.inference_mode():
            yield backbone
    finally:
        backbone.train(was_training)


def _video_features(backbone: nn.Module, clips: torch.Tensor, to_input, crop_size: int, stage: str,
                    device: torch.device, bf16: bool, spatial_crops: int = 1, clip_head=None) -> np.ndarray:
    """Clips [B, V, T, ...] (uint8 RGB [B, V, T, H, W, 3] unless a ClipInput's) -> float32 [B, D]:
    pooled ``stage`` features averaged over V (and over the ``spatial_crops`` crops of each clip)."""
    clips = clips.to(device, non_blocking=True)
    if spatial_crops == 3:
        clips = _three_crops(clips, crop_size)  # [B, V*3, T, c, c, 3]
    b, v = clips.shape[:2]
    x = to_input(clips.flatten(0, 1))  # [B*V, C, T, c, c]
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        maps = backbone.forward_features(x, stages=(stage,))
    # p5's global average is "pooled"; an earlier stage is pooled over all of time and space
    # (flatten keeps this right for R2D's 4-D image maps too).
    pooled = maps["pooled"] if stage == "p5" else maps[stage].flatten(2).mean(-1)
    pooled = pooled.float() if clip_head is None else clip_head(pooled.float()).float()
    return pooled.reshape(b, v, -1).mean(1).cpu().numpy()


def _three_crops(clips: torch.Tensor, crop_size: int) -> torch.Tensor:
    """[B, V, T, H, W, 3] -> [B, 3V, T, c, c, 3]: squares of side ``crop_size`` at the start, the
    centre and the end of the longer side (the width when square), the other side centred."""
    h, w = clips.shape[3:5]
    if min(h, w) < crop_size:
        raise ValueError(f"spatial_crops=3 needs frames at least {crop_size} px on each side, got {h}x{w}")
    c = crop_size
    if w >= h:
        top = (h - c) // 2
        crops = [clips[:, :, :, top:top + c, x:x + c] for x in (0, (w - c) // 2, w - c)]
    else:
        left = (w - c) // 2
        crops = [clips[:, :, :, y:y + c, left:left + c] for y in (0, (h - c) // 2, h - c)]
    return torch.cat(crops, dim=1)


def save_features(path: str | os.PathLike, features: FeatureSet) -> Path:
    """Write ``features`` to ``path`` (.npz, uncompressed) atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: numpy adds no ".npz"
        np.savez(f, features=features.features, labels=features.labels,
                 paths=np.array(features.paths, dtype=str), skipped=np.array(features.skipped, dtype=str),
                 meta=np.array(json.dumps(features.meta)))
    return path


def load_features(path: str | os.PathLike) -> FeatureSet:
    """Read a file written by ``save_features``; errors name the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"features file not found: {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: cannot read features ({err})") from err
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not a vidssl features file (a single array, not an .npz archive)")
    with data:
        missing = {"features", "labels", "paths", "skipped", "meta"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: not a vidssl features file (missing {sorted(missing)})")
        return FeatureSet(features=data["features"], labels=data["labels"], paths=data["paths"].tolist(),
                          skipped=data["skipped"].tolist(), meta=json.loads(str(data["meta"])))
