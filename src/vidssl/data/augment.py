"""Clip augmentation on the device, batched, with kornia.

Workers hand over uint8 clips [N, T, H, W, 3]; ``ClipAugment`` turns them into normalised
float32 [N, 3, T, crop, crop] on whatever device they are on. Every frame of a clip gets the
same random resized crop, flip, colour jitter, grayscale and blur, so motion inside the clip
is untouched by the augmentation (temporal consistency). ``per_frame_jitter=True`` draws the
colour-jitter factors per frame instead, as the pace prediction authors do (their code:
jitter (0.8, 0.8, 0.8, 0.2), p=0.8, per frame); the on/off draw, grayscale and blur stay per clip.

The random draw and its application are split (``sample_params`` / ``apply``) so the same
geometry can be applied to a clip's motion signals (``apply_geometry``): a crop and resize
rescale motion vectors, a horizontal flip negates their x component (the CMD authors' code
forgets both; DESIGN.md "Data flow"). A method can supply its own crop box and flip
(``sample_params(..., boxes=, flip=)``: MCL), add a thin-plate-spline warp of the crop
(``sample_params(..., tps=sample_tps(...))``: DSM's positive; crop and warp are one
resampling), or take a draw's geometry (``params.geometry``, a
``vidssl.data.geometry.GeometryParams``) to its own signals (CMD's motion vectors). The
geometry itself (boxes, resize, flip, thin-plate-spline warp) lives in
``vidssl.data.geometry``, whose public names are re-exported here.

Host-side decisions. ``sample_params`` draws on the CPU and ``apply`` keeps the draw there:
every branch (any clip jittered? which are blurred? is the crop a plain slice?) is decided
on those CPU tensors, and only the factors travel to the device, so an augmentation call on a
GPU issues no device-to-host sync.

Conventions. Crop boxes are integer pixel rectangles drawn like torchvision's
``RandomResizedCrop`` (area fraction in ``scale``, log-uniform aspect ratio in ``ratio``,
10 tries then a centre crop). Resizing samples at pixel centres (half-pixel convention), so a
box ``box_w`` pixels wide maps onto ``out_w`` pixels with scale exactly ``out_w / box_w``;
that is what makes the vector rescaling exact. Colour jitter follows torchvision's
definitions (kornia ``ColorJitter``): brightness and contrast and saturation factors drawn
from ``[max(0, 1 - j), 1 + j]``, hue shift from ``[-j, j]`` turns, applied in the fixed order
brightness, contrast, saturation, hue.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import torch
from kornia.color import rgb_to_grayscale
from kornia.enhance import (
    adjust_brightness_accumulative,
    adjust_contrast_with_mean_subtraction,
    adjust_hue,
    adjust_saturation_with_gray_subtraction,
)
from kornia.filters import gaussian_blur2d

from vidssl.data.geometry import (
    GeometryParams,
    TPSParams,
    _check_sizes,
    crop_resize_flip,
    host_constant,
    resample,
    sample_geometry,
    sample_tps,
    tps_warp,
    warp_clips,
    warp_fields,
)

__all__ = ["AugmentParams", "ClipAugment", "eval_transform", "crop_resize_flip",
           # the geometry module's names, re-exported for methods that import them from here
           "GeometryParams", "TPSParams", "resample", "sample_geometry", "sample_tps", "tps_warp", "warp_clips",
           "warp_fields"]


@dataclass
class AugmentParams:
    """One random draw for a batch of N clips (all on the CPU until ``apply`` moves them).

    boxes: float [N, 4] crop boxes (x0, y0, w, h) in pixels of an input of ``input_size``.
    flip: bool [N] horizontal flip.
    jitter: bool [N] whether colour jitter applies.
    brightness, contrast, saturation: float [N, F] multiplicative factors, F = 1 (per clip) or T.
    hue: float [N, F] hue shift in turns.
    gray: bool [N] convert to grayscale.
    blur_sigma: float [N] Gaussian blur sigma in output pixels; 0 = no blur.
    input_size: (H, W) the boxes refer to.
    output_size: (h, w) the boxes are resized to (set by ``ClipAugment.sample_params``).
    tps: optional thin-plate-spline warp of the cropped, flipped clip (``TPSParams`` at the
        crop size, e.g. ``sample_tps``: DSM's positive); ``apply`` resamples crop and warp at once.
    """

    boxes: torch.Tensor
    flip: torch.Tensor
    jitter: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    gray: torch.Tensor
    blur_sigma: torch.Tensor
    input_size: tuple[int, int]
    output_size: tuple[int, int] | None = None
    tps: TPSParams | None = None

    @property
    def geometry(self) -> GeometryParams:
        """The crop, flip (and TPS) of this draw as ``GeometryParams`` (to share them with motion signals)."""
        if self.output_size is None:
            raise ValueError("these params carry no output size; build GeometryParams.from_boxes yourself")
        return GeometryParams.from_boxes(self.boxes, self.input_size, self.output_size, self.flip, tps=self.tps)

    def to(self, device: torch.device | str) -> "AugmentParams":
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self)
                 if isinstance(getattr(self, f.name), (torch.Tensor, TPSParams))}
        return replace(self, **moved)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


class ClipAugment:
    """Temporally consistent random augmentation of uint8 clips [N, T, H, W, 3] -> float [N, 3, T, c, c].

    Args:
        crop_size: output side (square).
        scale: range of the crop's area as a fraction of the frame.
        ratio: range of the crop's aspect ratio (w / h), drawn log-uniformly.
        hflip_p: probability of a horizontal flip.
        jitter: (brightness, contrast, saturation, hue) strengths, torchvision convention.
        jitter_p: probability that colour jitter applies to a clip.
        gray_p: probability of converting a clip to grayscale.
        blur_p: probability of a Gaussian blur (sigma in [0.1, 2.0] pixels at 224 px, scaled
            to ``crop_size``; kernel about a tenth of the crop, SimCLR's recipe).
        per_frame_jitter: draw colour factors per frame (pace prediction) instead of per clip.
        mean, std: per-channel normalisation of the [0, 1] values.
    """

    def __init__(self, crop_size: int = 56, scale: tuple[float, float] = (0.7, 1.0),
                 ratio: tuple[float, float] = (1.0, 1.0), hflip_p: float = 0.5,
                 jitter: tuple[float, float, float, float] = (0.2, 0.2, 0.2, 0.05), jitter_p: float = 0.8,
                 gray_p: float = 0.2, blur_p: float = 0.0, per_frame_jitter: bool = False,
                 mean: tuple[float, float, float] = (0.45, 0.45, 0.45),
                 std: tuple[float, float, float] = (0.225, 0.225, 0.225)):
        if isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size <= 0:
            raise ValueError(f"crop_size must be a positive integer, got {crop_size!r}")
        scale, ratio = _pair("scale", scale), _pair("ratio", ratio)
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}")
        for name, p in (("hflip_p", hflip_p), ("jitter_p", jitter_p), ("gray_p", gray_p), ("blur_p", blur_p)):
            if not 0 <= p <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
        jitter = tuple(float(j) for j in jitter)
        if len(jitter) != 4 or min(jitter) < 0 or jitter[3] > 0.5:
            raise ValueError(f"jitter must be (brightness, contrast, saturation, hue) >= 0 with hue <= 0.5, "
                             f"got {jitter}")
        self.crop_size = crop_size
        self.scale, self.ratio = scale, ratio
        self.hflip_p, self.jitter_p, self.gray_p, self.blur_p = hflip_p, jitter_p, gray_p, blur_p
        self.jitter = jitter
        self.per_frame_jitter = bool(per_frame_jitter)
        self.mean, self.std = _channel_stats(mean, std)

    def __repr__(self) -> str:
        return (f"ClipAugment(crop_size={self.crop_size}, scale={self.scale}, ratio={self.ratio}, "
                f"hflip_p={self.hflip_p}, jitter={self.jitter}, jitter_p={self.jitter_p}, gray_p={self.gray_p}, "
                f"blur_p={self.blur_p}, per_frame_jitter={self.per_frame_jitter}, mean={self.mean}, std={self.std})")

    def __call__(self, clips: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, t, h, w = _check_clips(clips)
        return self.apply(clips, self.sample_params(n, h, w, generator, num_frames=t))

    # ---- random draw ----------------------------------------------------------------------

    def sample_params(self, n: int, height: int, width: int, generator: torch.Generator | None = None,
                      *, num_frames: int = 1, boxes=None, flip=None,
                      tps: TPSParams | None = None) -> AugmentParams:
        """Draw the augmentation of ``n`` clips of ``height`` x ``width`` on the CPU.

        ``num_frames`` is needed only with ``per_frame_jitter`` (one set of colour factors per
        frame). ``generator`` (a CPU ``torch.Generator``) makes the draw reproducible.
        ``boxes`` ([n, 4] (x0, y0, w, h) in input pixels, used exactly) and ``flip`` ([n] bool)
        replace the random crop and flip where given (a method supplying its own crop); the
        random numbers are drawn all the same, so the colour draws do not change with them.
        ``tps`` (a ``TPSParams`` at the crop size, e.g. ``sample_tps(n, (crop, crop), generator=g)``)
        adds a thin-plate-spline warp of the crop (DSM's spatial local disturbance).
        """
        if n <= 0 or height <= 0 or width <= 0 or num_frames <= 0:
            raise ValueError(f"sample_params needs positive sizes, got n={n}, height={height}, width={width}, "
                             f"num_frames={num_frames}")

        def uniform(*shape, low=0.0, high=1.0):
            return torch.rand(shape, generator=generator) * (high - low) + low

        crop = (self.crop_size, self.crop_size)
        geometry = sample_geometry(n, (height, width), crop, scale=self.scale, ratio=self.ratio,
                                   hflip_p=self.hflip_p, generator=generator, boxes=boxes, flip=flip)
        jitter = uniform(n) < self.jitter_p
        frames = num_frames if self.per_frame_jitter else 1
        b, c, s, hue = self.jitter
        brightness = uniform(n, frames, low=max(0.0, 1 - b), high=1 + b)
        contrast = uniform(n, frames, low=max(0.0, 1 - c), high=1 + c)
        saturation = uniform(n, frames, low=max(0.0, 1 - s), high=1 + s)
        hue_shift = uniform(n, frames, low=-hue, high=hue)
        gray = uniform(n) < self.gray_p
        blur = uniform(n) < self.blur_p
        sigma = uniform(n, low=0.1, high=2.0) * (self.crop_size / 224.0)
        return AugmentParams(boxes=geometry.boxes, flip=geometry.flip, jitter=jitter, brightness=brightness,
                             contrast=contrast, saturation=saturation, hue=hue_shift, gray=gray,
                             blur_sigma=torch.where(blur, sigma, torch.zeros_like(sigma)),
                             input_size=(int(height), int(width)), output_size=crop, tps=tps)

    # ---- application ----------------------------------------------------------------------

    def apply(self, clips: torch.Tensor, params: AugmentParams) -> torch.Tensor:
        """Apply a draw to uint8 clips [N, T, H, W, 3]; returns normalised float32 [N, 3, T, crop, crop].

        Decisions are taken on the CPU copy of ``params`` (no device sync when they are on the
        CPU, as ``sample_params`` returns them).
        """
        n, t, h, w = _check_clips(clips)
        _check_sizes(params, n, (h, w), "clips")
        params = params.to("cpu")
        # One grid per clip: the clip's T frames are 3T channels of one image.
        frames = clips.permute(0, 1, 4, 2, 3).reshape(n, t * 3, h, w).float().div_(255.0)
        if params.tps is None:
            x = crop_resize_flip(frames, params.boxes, params.flip, (self.crop_size, self.crop_size))
        else:  # crop, flip and spline in one resampling
            x = resample(frames, params.geometry)
        x = x.view(n * t, 3, self.crop_size, self.crop_size)
        x = self._colour(x, params, n, t)
        x = self._blur(x, params, n, t)
        mean = host_constant(self.mean, x.device).view(1, 3, 1, 1)
        std = host_constant(self.std, x.device).view(1, 3, 1, 1)
        x = x.sub_(mean).div_(std)  # x is this call's own tensor (every step above makes a new one)
        return x.view(n, t, 3, self.crop_size, self.crop_size).permute(0, 2, 1, 3, 4).contiguous()

    def apply_geometry(self, maps: torch.Tensor, params: AugmentParams, vector_field: bool = False,
                       size: tuple[int, int] | None = None) -> torch.Tensor:
        """Crop, resize and flip per-frame maps [N, T, H', W', C] exactly as ``apply`` did the clips.

        Returns float32 [N, C, T, out_h, out_w] (the layout of ``apply``'s output), with
        ``(out_h, out_w)`` = ``size`` or the crop size. Maps of another resolution than the
        clips (H', W' != H, W) get the box scaled to their grid. With ``vector_field`` (C = 2,
        x then y) the values follow the geometry: x is multiplied by ``out_w / box_w`` and y by
        ``out_h / box_h`` (box in map pixels), and a flip negates x. That factor is the same in
        pixels of the clip's frames as in pixels of the map, so a field in pixels of the frames
        it was delivered with (DESIGN.md; e.g. motion vectors on a 1/4 grid) comes out in pixels
        of the output clip, provided ``size`` is to the crop size as the map is to the clip
        (``vidssl.data.geometry.warp_fields`` picks that size by default).
        """
        if maps.ndim != 5:
            raise ValueError(f"maps must be [N, T, H, W, C], got shape {tuple(maps.shape)}")
        n, _, _, _, ch = maps.shape
        if n != len(params):
            raise ValueError(f"maps hold {n} clips but the params were drawn for {len(params)}")
        if vector_field and ch != 2:
            raise ValueError(f"a vector field needs C = 2 (x, y), got C = {ch}")
        size = size if size is not None else (self.crop_size, self.crop_size)
        if params.tps is not None:
            raise NotImplementedError("apply_geometry does not follow a TPS warp (see warp_fields)")
        geometry = GeometryParams.from_boxes(params.boxes, params.input_size, (self.crop_size, self.crop_size),
                                             params.flip)
        out = warp_fields(maps, geometry, size=size, vector_field=vector_field, units="grid")
        return out.permute(0, 4, 1, 2, 3).contiguous()

    # ---- pieces (params on the CPU; only factors go to the device) --------------------------

    def _colour(self, x: torch.Tensor, params: AugmentParams, n: int, t: int) -> torch.Tensor:
        device = x.device
        if bool(params.jitter.any()):
            on = params.jitter.view(n, 1)

            def per_frame(factor: torch.Tensor, neutral: float) -> torch.Tensor:
                factor = torch.where(on, factor, torch.full_like(factor, neutral))
                return factor.expand(n, t).reshape(n * t) if factor.shape[1] == 1 else factor.reshape(n * t)

            if params.brightness.shape[1] not in (1, t):
                raise ValueError(f"colour params hold {params.brightness.shape[1]} frames per clip, clips have {t}")
            x = adjust_brightness_accumulative(x, per_frame(params.brightness, 1.0).to(device, non_blocking=True))
            x = adjust_contrast_with_mean_subtraction(x, per_frame(params.contrast, 1.0).to(device, non_blocking=True))
            x = adjust_saturation_with_gray_subtraction(x, per_frame(params.saturation, 1.0).to(device,
                                                                                                  non_blocking=True))
            hue = per_frame(params.hue, 0.0)
            if bool((hue != 0).any()):
                x = adjust_hue(x, (hue * (2 * math.pi)).to(device, non_blocking=True))
        if bool(params.gray.any()):
            gray = params.gray.repeat_interleave(t).view(n * t, 1, 1, 1).to(device, non_blocking=True)
            x = torch.where(gray, rgb_to_grayscale(x).expand_as(x), x)
        return x

    def _blur(self, x: torch.Tensor, params: AugmentParams, n: int, t: int) -> torch.Tensor:
        sigma = params.blur_sigma.repeat_interleave(t)
        chosen = torch.nonzero(sigma > 0).flatten()
        if chosen.numel() == 0:
            return x
        kernel = max(3, (self.crop_size // 10) | 1)  # odd, about a tenth of the crop (SimCLR)
        # sigma stays on the CPU: kornia checks it there and moves it itself (no device read).
        s = sigma[chosen].view(-1, 1).expand(-1, 2).contiguous()
        chosen = chosen.to(x.device, non_blocking=True)
        x = x.clone()
        x[chosen] = gaussian_blur2d(x[chosen], (kernel, kernel), s, border_type="reflect")
        return x


def eval_transform(clips: torch.Tensor, crop_size: int, mean: tuple[float, float, float] = (0.45, 0.45, 0.45),
                   std: tuple[float, float, float] = (0.225, 0.225, 0.225)) -> torch.Tensor:
    """Centre crop and normalise uint8 clips [N, T, H, W, 3] -> float32 [N, 3, T, crop, crop].

    Frames at least ``crop_size`` on each side are cropped exactly (no resampling); smaller
    frames have their central square resized up to ``crop_size``.
    """
    n, t, h, w = _check_clips(clips)
    if isinstance(crop_size, bool) or not isinstance(crop_size, int) or crop_size <= 0:
        raise ValueError(f"crop_size must be a positive integer, got {crop_size!r}")
    mean_t, std_t = _channel_stats(mean, std)
    x = clips.permute(0, 1, 4, 2, 3).reshape(n * t, 3, h, w).float().div_(255.0)
    geometry = GeometryParams.centre_crop(n * t, (h, w), crop_size)  # host-side boxes
    if h >= crop_size and w >= crop_size:  # an exact crop: slice, no resampling
        left, top = (int(v) for v in geometry.boxes[0, :2])
        x = x[:, :, top:top + crop_size, left:left + crop_size]
    else:
        x = crop_resize_flip(x, geometry.boxes, geometry.flip, (crop_size, crop_size))
    mean_v = host_constant(mean_t, x.device).view(1, 3, 1, 1)
    x = (x - mean_v) / host_constant(std_t, x.device).view(1, 3, 1, 1)
    return x.reshape(n, t, 3, crop_size, crop_size).permute(0, 2, 1, 3, 4).contiguous()


def _check_clips(clips: torch.Tensor) -> tuple[int, int, int, int]:
    if not isinstance(clips, torch.Tensor):
        raise TypeError(f"clips must be a torch.Tensor, got {type(clips).__name__}")
    if clips.ndim != 5 or clips.shape[-1] != 3:
        raise ValueError(f"clips must be [N, T, H, W, 3], got shape {tuple(clips.shape)}")
    if clips.dtype != torch.uint8:
        raise TypeError(f"clips must be uint8 (as the loader delivers them), got {clips.dtype}")
    n, t, h, w, _ = clips.shape
    return n, t, h, w


def _pair(name: str, value) -> tuple[float, float]:
    value = tuple(float(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"{name} must be a (min, max) pair, got {value}")
    return value


def _channel_stats(mean, std) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(f"mean and std need 3 values each with std > 0, got mean={mean}, std={std}")
    return mean, std
