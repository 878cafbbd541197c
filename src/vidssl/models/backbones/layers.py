"""Building blocks shared by all backbones: a bf16-safe Conv3d and conv-BN-ReLU units."""
from __future__ import annotations

from typing import Optional, Union

import torch
from torch import nn

__all__ = ["Size3", "Conv3d", "ConvBNReLU3d", "SepConvBNReLU3d", "triple"]

Size3 = Union[int, tuple[int, int, int]]


def triple(v: Size3) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(v)  # type: ignore[return-value]


def _needs_fp32_weight_grad(x: torch.Tensor, weight: torch.Tensor, kernel: tuple[int, ...]) -> bool:
    """True where PyTorch's CPU (oneDNN) bf16 conv3d computes a wrong weight gradient.

    Measured on torch 2.13 CPU (AVX-512 without native bf16): when an input clip is smaller
    than the kernel along some dimension (T=2 or T=1 under a 3-tap temporal kernel, a 2x2 map
    under 3x3, T<7 under I3D's 7x7x7 stem), the bf16 weight gradient is garbage (relative
    error ~1, sometimes inf/NaN) and the process can abort with heap corruption; the forward
    output and the input gradient stay correct, fp32 and fp16 are unaffected. These are
    exactly the late stages of every backbone on 8-frame 56px clips, so such a convolution is
    run in fp32 instead (late stages, whose maps are small). Inference (no grad) keeps
    the fast bf16 path.
    """
    if x.device.type != "cpu" or not (torch.is_grad_enabled() and weight.requires_grad):
        return False
    low_precision = x.dtype == torch.bfloat16 or weight.dtype == torch.bfloat16 or (
        torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    )
    return low_precision and any(size < k for size, k in zip(x.shape[2:], kernel))


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that sidesteps the CPU bf16 weight-gradient bug (see above) by running
    the affected calls in fp32; the output comes back in the dtype bf16 would have given."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        if not _needs_fp32_weight_grad(x, weight, self.kernel_size):
            return super()._conv_forward(x, weight, bias)
        with torch.autocast("cpu", enabled=False):
            out = super()._conv_forward(x.float(), weight.float(), None if bias is None else bias.float())
        return out.to(torch.bfloat16)


class ConvBNReLU3d(nn.Sequential):
    """Conv3d (no bias: the BN that follows has its own shift) -> BatchNorm3d -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: Size3, stride: Size3 = 1, padding: Size3 = 0):
        super().__init__(
            Conv3d(in_ch, out_ch, triple(kernel), stride=triple(stride), padding=triple(padding), bias=False),
            nn.BatchNorm3d(out_ch),
            nn.ReLU(inplace=True),
        )


class SepConvBNReLU3d(nn.Sequential):
    """A k_t x k x k convolution factorised as 1 x k x k (space) then k_t x 1 x 1 (time).

    S3D's separable convolution (Xie et al. 2018, Sec. 4.2). Both factors are followed by BN
    and ReLU as in the common PyTorch ports (CoCLR's s3dg.py); the TensorFlow reference has
    no BN after the temporal factor. The intermediate width is ``out_ch`` as in S3D (unlike
    R(2+1)D, which picks it to match a full 3D conv's parameter count).
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: Size3, stride: Size3 = 1, padding: Size3 = 0):
        kt, kh, kw = triple(kernel)
        st, sh, sw = triple(stride)
        pt, ph, pw = triple(padding)
        super().__init__(
            ConvBNReLU3d(in_ch, out_ch, (1, kh, kw), stride=(1, sh, sw), padding=(0, ph, pw)),
            ConvBNReLU3d(out_ch, out_ch, (kt, 1, 1), stride=(st, 1, 1), padding=(pt, 0, 0)),
        )
