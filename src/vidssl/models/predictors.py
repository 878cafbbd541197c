"""Encoder-decoder predictors from one feature map to another: CMD's T (Huang et al., CVPR 2021,
sec. 3.3 and Table 1), which predicts the motion features of the near future from a clip's.

Both take a map ``x`` [B, C_in, T1, H1, W1] and return [B, C_out, T3, H3, W3]:

- :class:`TransformerPredictor`: ``x`` is a sequence of T1*H1*W1 tokens, the output a sequence
  of T3*H3*W3 tokens (sec. 3.3). Tokens are projected to ``d_model``, plus a learned position
  embedding; the decoder's inputs are T3*H3*W3 learned queries; ``torch.nn.Transformer`` does
  the rest. Paper sizes (sec. 4.1): 2 encoder and 4 decoder layers, width 512, 8 heads.
- :class:`ConvGRUPredictor`: a convolutional GRU (Ballas et al. 2016, as in DPC / MemDPC, Han et
  al.) reads the T1 steps of ``x`` and rolls out T3 future steps, each prediction fed back as the
  next input (DPC's aggregation + prediction). It works on the target grid: ``x`` is resized
  to H3 x W3 first when the grids differ.

:func:`feature_grid` gives a backbone's (T, H, W) output grid for an input size without
computing anything (meta tensors), which is how a method sizes these predictors.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TransformerPredictor", "ConvGRUCell", "ConvGRUPredictor", "feature_grid"]

Grid = tuple[int, int, int]


class TransformerPredictor(nn.Module):
    """[B, in_dim, *src_grid] -> [B, out_dim, *tgt_grid] through ``nn.Transformer``.

    Args:
        in_dim, out_dim: channels of the input map and of the predicted map.
        src_grid, tgt_grid: (T, H, W) of the input and output maps; they fix the number of
            learned position embeddings (T1*H1*W1) and output queries (T3*H3*W3).
        d_model, nhead, num_encoder_layers, num_decoder_layers: the Transformer's sizes.
        dim_feedforward: inner width of each feed-forward block (Vaswani et al.: 4 * d_model).
        dropout: inside the Transformer (drawn from the global torch RNG).
    """

    def __init__(self, in_dim: int, out_dim: int, src_grid: Grid, tgt_grid: Grid, *, d_model: int = 512,
                 nhead: int = 8, num_encoder_layers: int = 2, num_decoder_layers: int = 4,
                 dim_feedforward: int = 2048, dropout: float = 0.1):
        super().__init__()
        self.src_grid, self.tgt_grid = tuple(src_grid), tuple(tgt_grid)
        self.in_dim, self.out_dim = in_dim, out_dim
        self.input = nn.Linear(in_dim, d_model)
        self.src_pos = nn.Parameter(torch.empty(1, _numel(src_grid), d_model))
        self.queries = nn.Parameter(torch.empty(1, _numel(tgt_grid), d_model))
        self.transformer = nn.Transformer(d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward,
                                          dropout, batch_first=True)
        self.output = nn.Linear(d_model, out_dim)
        nn.init.normal_(self.src_pos, std=0.02)
        nn.init.normal_(self.queries, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_map(x, self.in_dim, self.src_grid, "TransformerPredictor")
        tokens = self.input(x.flatten(2).transpose(1, 2)) + self.src_pos        # [B, T1*H1*W1, d]
        queries = self.queries.expand(x.shape[0], -1, -1)
        out = self.output(self.transformer(tokens, queries))                      # [B, T3*H3*W3, out]
        return out.transpose(1, 2).reshape(x.shape[0], self.out_dim, *self.tgt_grid)


class ConvGRUCell(nn.Module):
    """h' = (1 - z) * h + z * tanh(W [x, r * h]), with z, r = sigmoid(W [x, h]) as spatial convolutions.

    One time step is a [B, C, 1, H, W] map and the kernels are 1 x k x k ``Conv3d`` (the same
    computation as ``Conv2d``), so every weight is 5-D and a method moved to
    ``torch.channels_last_3d`` can hold this cell.
    """

    def __init__(self, in_dim: int, hidden_dim: int, kernel_size: int = 3):
        super().__init__()
        self.hidden_dim = hidden_dim
        kernel, pad = (1, kernel_size, kernel_size), (0, kernel_size // 2, kernel_size // 2)
        self.gates = nn.Conv3d(in_dim + hidden_dim, 2 * hidden_dim, kernel, padding=pad)
        self.candidate = nn.Conv3d(in_dim + hidden_dim, hidden_dim, kernel, padding=pad)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_dim, *x.shape[2:])
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, dim=1)
        candidate = torch.tanh(self.candidate(torch.cat([x, r * h], 1)))
        return (1 - z) * h + z * candidate


class ConvGRUPredictor(nn.Module):
    """[B, in_dim, T1, H1, W1] -> [B, out_dim, *tgt_grid]: aggregate with a ConvGRU, then predict.

    The GRU reads the T1 input steps; each of the T3 output steps is predicted from the hidden
    state by a 1x1 two-layer network (in the input's feature space), fed back as the next
    input, and projected to ``out_dim``.
    """

    def __init__(self, in_dim: int, out_dim: int, tgt_grid: Grid, *, hidden_dim: int = 512, kernel_size: int = 3,
                 num_layers: int = 1):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"ConvGRUPredictor: num_layers must be >= 1, got {num_layers}")
        self.in_dim, self.out_dim, self.tgt_grid = in_dim, out_dim, tuple(tgt_grid)
        self.cells = nn.ModuleList(ConvGRUCell(in_dim if i == 0 else hidden_dim, hidden_dim, kernel_size)
                                   for i in range(num_layers))
        self.predict = nn.Sequential(nn.Conv3d(hidden_dim, hidden_dim, 1), nn.ReLU(inplace=True),
                                     nn.Conv3d(hidden_dim, in_dim, 1))
        self.output = nn.Conv3d(in_dim, out_dim, 1)

    def _step(self, x: torch.Tensor, hidden: list) -> torch.Tensor:
        for i, cell in enumerate(self.cells):
            hidden[i] = x = cell(x, hidden[i])
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_map(x, self.in_dim, None, "ConvGRUPredictor")
        t3, h3, w3 = self.tgt_grid
        if tuple(x.shape[-2:]) != (h3, w3):
            x = F.interpolate(x, size=(x.shape[2], h3, w3), mode="trilinear", align_corners=False)
        hidden: list = [None] * len(self.cells)
        for t in range(x.shape[2]):
            top = self._step(x[:, :, t:t + 1], hidden)
        outputs = []
        for _ in range(t3):
            step = self.predict(top)
            outputs.append(self.output(step))
            top = self._step(step, hidden)
        return torch.cat(outputs, dim=2)


def feature_grid(backbone: nn.Module, in_channels: int, frames: int, size: tuple[int, int],
                 stage: str = "p5") -> Grid:
    """(T, H, W) of ``backbone``'s ``stage`` map for a [1, in_channels, frames, *size] input.

    Runs the backbone on meta tensors (shapes only, nothing computed, the weights untouched).
    """
    meta = {name: torch.empty_like(t, device="meta")
            for name, t in itertools.chain(backbone.named_parameters(), backbone.named_buffers())}
    x = torch.empty(1, in_channels, frames, *size, device="meta")
    with torch.no_grad():
        maps = _meta_features(backbone, meta, x, stage)
    shape = tuple(maps.shape[2:])
    return shape if len(shape) == 3 else (1, *shape)


def _meta_features(backbone: nn.Module, meta: dict, x: torch.Tensor, stage: str) -> torch.Tensor:
    class _Stage(nn.Module):  # functional_call calls forward: route it to forward_features
        def __init__(self):
            super().__init__()
            self.net = backbone

        def forward(self, inp):
            return self.net.forward_features(inp, (stage,))[stage]

    return torch.func.functional_call(_Stage(), {f"net.{k}": v for k, v in meta.items()}, (x,))


def _numel(grid: Grid) -> int:
    t, h, w = grid
    return int(t) * int(h) * int(w)


def _check_map(x: torch.Tensor, channels: int, grid: Grid | None, who: str) -> None:
    if x.dim() != 5 or x.shape[1] != channels or (grid is not None and tuple(x.shape[2:]) != tuple(grid)):
        want = f"[B, {channels}, {', '.join(map(str, grid))}]" if grid is not None else f"[B, {channels}, T, H, W]"
        raise ValueError(f"{who} expects a map {want}, got shape {tuple(x.shape)}")
