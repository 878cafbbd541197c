"""The generic training module: the grad-scaler path of 16-mixed and the launched world size."""
import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from torch import nn

from vidssl.config import OptimConfig
from vidssl.train.module import MethodModule, StepPlan


class Scaled(nn.Module):
    """loss = sum(w * x): the gradient of w is x, exactly, whatever the precision (no autocast op)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(4))

    def forward(self, batch):
        return {"loss": (self.w * batch["x"]).sum(dim=1).mean()}


def _batches(n, grad):
    x = torch.full((n, 2, 4), float(grad))  # n batches of 2 items; mean over the batch keeps grad = x
    return [{"x": x[i], "index": torch.arange(2)} for i in range(n)]


def _fit(batches, scaler=None, grad_clip=None):
    optim = OptimConfig(name="sgd", lr=0.5, base_batch=2, momentum=0.0, weight_decay=0.0, schedule="constant",
                        grad_clip=grad_clip)
    module = MethodModule(Scaled(), optim=optim, lr=0.5, total_steps=len(batches), steps_per_epoch=len(batches),
                          seed=0, max_bad_fraction=1.0)
    plugins = [MixedPrecision("16-mixed", "cpu", scaler=scaler)] if scaler is not None else []
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, plugins=plugins)
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    return module


def test_fp16_overflow_backs_off_the_scale_and_counts_skipped_steps():
    # Gradient 1000 at scale 2**127 overflows fp32; halving the scale on each overflow, the 10th step
    # (scale 2**118, 1000 * 2**118 < 3.4e38) is the first finite one.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 127, growth_interval=1000)
    module = _fit(_batches(12, 1000.0), scaler=scaler)
    assert int(module.skipped_steps) == 9
    assert scaler.get_scale() == 2.0 ** 118
    # The 3 real steps used unscaled gradients: w = -lr * 1000 * 3.
    torch.testing.assert_close(module.method.w.detach(), torch.full((4,), -0.5 * 1000 * 3))


def test_fp16_clips_the_unscaled_gradients():
    # |grad| = 2 * sqrt(4) = 4; clipped to 1, each step moves w by lr * 1 / 2 along each coordinate.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    fp16 = _fit(_batches(2, 2.0), scaler=scaler, grad_clip=1.0)
    fp32 = _fit(_batches(2, 2.0), grad_clip=1.0)
    assert int(fp16.skipped_steps) == 0
    torch.testing.assert_close(fp16.method.w.detach(), torch.full((4,), -0.5))
    torch.testing.assert_close(fp16.method.w.detach(), fp32.method.w.detach())


def test_fp32_non_finite_step_is_skipped():
    module = _fit([{"x": torch.full((2, 4), float("inf")), "index": torch.arange(2)}, *_batches(1, 1.0)])
    assert int(module.skipped_steps) == 1
    torch.testing.assert_close(module.method.w.detach(), torch.full((4,), -0.5))


def test_step_plan_scales_with_the_world_size():
    plan = StepPlan(base_lr=0.1, base_batch=256, batch_size=32, samples_per_epoch=2000, max_epochs=3)
    assert plan.resolve(1) == (pytest.approx(0.1 * 32 / 256), 3 * 62, 62)
    assert plan.resolve(4) == (pytest.approx(0.1 * 128 / 256), 3 * 15, 15)
    assert StepPlan(0.1, 256, 32, 2000, 3, max_steps=100).resolve(8)[1] == 100


def test_plan_is_resolved_from_the_launched_trainer():
    class Launched:  # what setup() sees after a launch over 4 processes, whatever `devices` said
        world_size = 4

    plan = StepPlan(base_lr=0.1, base_batch=256, batch_size=32, samples_per_epoch=2000, max_epochs=3)
    module = MethodModule(Scaled(), optim=OptimConfig(), plan=plan, seed=0, max_bad_fraction=1.0)
    module._trainer = Launched()
    module.setup("fit")
    assert module.world_size == 4
    assert (module.lr, module.total_steps, module.steps_per_epoch) == (pytest.approx(0.05), 45, 15)
    with pytest.raises(ValueError, match="StepPlan"):
        MethodModule(Scaled(), optim=OptimConfig(), seed=0, max_bad_fraction=1.0)


class Recording(Scaled):
    """Scaled, noting the step and epoch each batch carries into forward."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, batch):
        self.seen.append((batch["step"], batch["epoch"]))
        return super().forward(batch)


def _recording_fit(batches, total_steps, *, stop_after=None, ckpt_path=None, save_to=None):
    optim = OptimConfig(name="sgd", lr=0.5, base_batch=2, momentum=0.0, weight_decay=0.0, schedule="constant")
    module = MethodModule(Recording(), optim=optim, lr=0.5, total_steps=total_steps, steps_per_epoch=4, seed=0,
                          max_bad_fraction=1.0)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=-1, max_steps=stop_after or -1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None),
                ckpt_path=ckpt_path)
    if save_to:
        trainer.save_checkpoint(save_to)
    return module.method.seen


def test_batch_carries_step_and_epoch_and_a_resume_continues_them(tmp_path):
    # 4 steps per epoch: the 6 batches are epochs 0, 0.25, ..., 1.25 into training.
    whole = _recording_fit(_batches(6, 1.0), 6)
    assert whole == [(0, 0.0), (1, 0.25), (2, 0.5), (3, 0.75), (4, 1.0), (5, 1.25)]
    assert all(isinstance(s, int) and isinstance(e, float) for s, e in whole)
    first = _recording_fit(_batches(6, 1.0), 6, stop_after=3, save_to=tmp_path / "mid.ckpt")
    rest = _recording_fit(_batches(6, 1.0), 6, ckpt_path=str(tmp_path / "mid.ckpt"))
    assert first + rest == whole


def test_a_skipped_step_is_no_optimiser_step_but_its_batch_counts_toward_the_epoch():
    batches = [*_batches(1, 1.0), {"x": torch.full((2, 4), float("inf")), "index": torch.arange(2)}, *_batches(2, 1.0)]
    assert _recording_fit(batches, 3) == [(0, 0.0), (1, 0.25), (1, 0.5), (2, 0.75)]
