"""`vidssl finetune` end to end on the tiny benchmark, resume, static clips, limited labels, scene bias."""
import json
import shutil

import lightning as L
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import Crash, CrashAt
from vidssl.cli import main
from vidssl.config import ConfigError, FinetuneRunConfig, load_config
from vidssl.data.catalogs import Catalog, VideoRecord, class_balanced_subset, ucf101
from vidssl.data.dataset import VideoDataset
from vidssl.data.views import StaticClips, UniformClips
from vidssl.eval.features import _three_crops
from vidssl.eval.finetune import finetune, topk_metrics
from vidssl.eval.scene_bias import compare_static_normal
from vidssl.video.reader import VideoReader

# Seconds-long fine-tunes: 32 train videos, batch 8, 4 steps per epoch, 2 test clips.
FAST = ["finetune.epochs=2", "finetune.batch_size=8", "finetune.num_clips=2", "finetune.test_batch_size=16",
        "trainer.checkpoint_every_n_steps=2", "trainer.progress=false"]


@pytest.fixture
def pretrained(tiny_supervised_run):
    """The run whose backbone gets fine-tuned (conftest's 2-step supervised run)."""
    return tiny_supervised_run


def _cfg(run, *extra):
    return load_config([run / "config.yaml"], [*FAST, *extra], schema=FinetuneRunConfig)


def test_finetune_end_to_end_writes_finetune_json(pretrained, tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["finetune", str(pretrained), "--out", str(out), *FAST, "--test-split", "1", "--test-split", "2"]) == 0
    assert "split2: top-1" in capsys.readouterr().out
    report = json.loads((out / "finetune.json").read_text())
    assert report["status"] == "done" and report["init"] == "pretrained"
    assert report["steps"] == report["total_steps"] == 8 and report["steps_per_epoch"] == 4
    assert report["clip_len"] == 8 and report["stride"] == 2 and report["crop_size"] == 28  # the run's
    assert report["lr"] == pytest.approx(0.0008)  # lr = 0.0001 x B at batch 8 (CMD)
    assert [e["epoch"] for e in report["epochs"]] == [1.0, 2.0]
    for epoch in report["epochs"]:
        assert np.isfinite(epoch["train_loss"]) and set(epoch["test"]) == {"split1", "split2"}
        for metrics in epoch["test"].values():
            assert 0 <= metrics["top1"] <= metrics["top5"] <= 100
    final = report["final"]["test"]
    assert set(final) == {"split1", "split2"} and final["split1"]["videos"] == report["test_lists"]["split1"] == 32
    assert final["split1"]["top1"] == report["epochs"][-1]["test"]["split1"]["top1"]
    assert list(final["split1"]["per_class_top1"]) == report["classes"]
    assert report["config"]["finetune"]["dropout"] == 0.3
    assert (out / "finetune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tuned, start = load_file(out / "backbone.safetensors"), load_file(pretrained / "backbone.safetensors")
    assert tuned.keys() == start.keys() and any(not torch.equal(tuned[k], start[k]) for k in tuned)
    assert load_file(out / "classifier.safetensors")["weight"].shape == (8, 32)  # 8 classes, width-4 r3d: 32-d


def test_from_scratch_with_limited_labels(pretrained, tmp_path):
    # A learning rate of ~0 keeps the weights where they started, so the start can be checked; another
    # seed than the pretraining's, whose init it would otherwise share.
    cfg = _cfg(pretrained, "finetune.label_fraction=0.25", "finetune.label_seed=3", "finetune.lr=1e-12",
               "trainer.seed=1")
    out = finetune(cfg, run_dir=pretrained, out_dir=tmp_path / "scratch", from_scratch=True)
    report = json.loads((out / "finetune.json").read_text())
    assert report["init"] == "scratch" and report["label_fraction"] == 0.25
    # 25% of 32 videos over 8 classes: one per class; 1 step per epoch at batch 8.
    assert report["train_videos"] == 8 and set(report["labelled_per_class"].values()) == {1}
    assert report["steps_per_epoch"] == 1 and report["steps"] == 2
    # The start was a seeded random init of the run's spec, not its pretrained weights.
    from vidssl.train.export import run_network_specs

    L.seed_everything(cfg.trainer.seed, verbose=False)
    fresh = run_network_specs(pretrained)["backbone"].build().state_dict()
    tuned, trained = load_file(out / "backbone.safetensors"), load_file(pretrained / "backbone.safetensors")
    convs = [k for k in tuned if tuned[k].ndim == 5]
    assert convs and report["backbone"] == "r3d-10 (width 4, 3 input channels)"
    for key in convs:
        torch.testing.assert_close(tuned[key], fresh[key], rtol=0, atol=1e-6, msg=key)
        assert not torch.allclose(tuned[key], trained[key], atol=1e-3), key


def test_resume_gives_identical_weights_and_history(pretrained, tmp_path):
    cfg = _cfg(pretrained, "finetune.epochs=3")  # 12 steps, scored at 4, 8, 12
    whole = finetune(cfg, run_dir=pretrained, out_dir=tmp_path / "whole")
    with pytest.raises(Crash):
        finetune(cfg, run_dir=pretrained, out_dir=tmp_path / "split", callbacks=[CrashAt(6)])
    with pytest.raises(FileExistsError, match="--resume"):
        finetune(cfg, run_dir=pretrained, out_dir=tmp_path / "split")
    resumed = finetune(cfg, run_dir=pretrained, out_dir=tmp_path / "split", resume=True)
    for name in ("backbone.safetensors", "classifier.safetensors"):
        a, b = load_file(whole / name), load_file(resumed / name)
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name} {key}")
    epochs = [json.loads((d / "finetune.json").read_text())["epochs"] for d in (whole, resumed)]
    assert epochs[0] == epochs[1] and len(epochs[0]) == 3
    # It continued from step 6 rather than starting over: every step was logged once.
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))


def test_static_clips_repeat_one_frame(tiny_benchmark):
    catalog = ucf101(tiny_benchmark, split=1, subset="train")
    dataset = VideoDataset(catalog, StaticClips(num_views=1, clip_len=8), frame_size=(32, 32), seed=5)
    for i in (0, 7):
        clip = dataset[(i, 0)]["clips"][0].numpy()  # [T, H, W, 3]
        assert clip.shape == (8, 32, 32, 3) and (clip == clip[:1]).all()
        frames = VideoReader(catalog.records[i].path, size=(32, 32)).read(np.arange(16))
        matches = [t for t in range(16) if np.array_equal(frames[t], clip[0])]
        assert matches, "the repeated frame is one of the video's own frames"
    # Test clips: each uniform clip's middle frame, repeated; the frames stay spread over the video.
    requests = UniformClips(num_clips=3, clip_len=4, stride=2, static=True)(16)
    normal = UniformClips(num_clips=3, clip_len=4, stride=2)(16)["clips"].indices
    assert (requests["clips"].indices == normal[:, 2:3]).all()


def test_class_balanced_subset_sizes():
    labels = [0] * 50 + [1] * 30 + [2] * 20  # 100 videos, unbalanced
    catalog = Catalog([VideoRecord(f"/v/{i}.avi", y) for i, y in enumerate(labels)], ["a", "b", "c"], "toy")
    ten = class_balanced_subset(catalog, 0.1, seed=0)
    assert np.bincount(ten.labels()).tolist() == [3, 3, 3]  # round(0.1 * 100 / 3) per class
    one = class_balanced_subset(catalog, 0.01, seed=0)
    assert np.bincount(one.labels()).tolist() == [1, 1, 1]  # never below one video per class
    big = class_balanced_subset(catalog, 0.9, seed=0)
    assert np.bincount(big.labels()).tolist() == [30, 30, 20]  # a small class gives all it has
    assert ten.paths() == class_balanced_subset(catalog, 0.1, seed=0).paths()  # seeded
    assert ten.paths() != class_balanced_subset(catalog, 0.1, seed=1).paths()
    assert ten.paths() == sorted(ten.paths(), key=lambda p: int(p.split("/")[-1][:-4]))  # catalog order
    assert class_balanced_subset(catalog, 1.0) is catalog
    with pytest.raises(ValueError, match="fraction"):
        class_balanced_subset(catalog, 0.0)


def test_topk_metrics_by_hand():
    logits = np.array([[3, 2, 1], [1, 3, 2], [1, 2, 3], [3, 1, 2]], dtype=float)
    m = topk_metrics(logits, np.array([0, 2, 1, 1]), ["a", "b", "c"])
    assert m["top1"] == 25.0 and m["top5"] == 100.0  # top-K with K = 3 classes
    assert m["per_class_top1"] == {"a": 100.0, "b": 0.0, "c": 0.0}


def test_three_crops_take_both_ends_and_centre():
    clips = torch.arange(10 * 16, dtype=torch.uint8).view(1, 1, 1, 10, 16, 1).expand(1, 1, 2, 10, 16, 3)
    crops = _three_crops(clips, 8)
    assert crops.shape == (1, 3, 2, 8, 8, 3)
    tops_left = crops[0, :, 0, 0, 0, 0].tolist()  # the pixel (row, col) = (1, 0), (1, 4), (1, 8)
    assert tops_left == [16 * 1 + 0, 16 * 1 + 4, 16 * 1 + 8]


def test_scene_bias_share_by_hand():
    normal = {"split1": {"top1": 60.0, "per_class_top1": {"a": 80.0, "b": 42.0, "c": 50.0, "d": 0.0}}}
    static = {"split1": {"top1": 40.0, "per_class_top1": {"a": 40.0, "b": 41.0, "c": 0.0, "d": 0.0}}}
    row = compare_static_normal(normal, static, ["a", "b", "c", "d"])["split1"]
    assert row["classes"]["a"]["relative_improvement"] == pytest.approx(100.0)
    assert row["classes"]["b"]["relative_improvement"] == pytest.approx(100 / 41)
    assert row["classes"]["c"]["relative_improvement"] is None  # unbounded: counts as a gain
    assert row["classes_under_threshold"] == ["b", "d"] and row["share_under_threshold"] == 50.0


def test_scene_bias_end_to_end(pretrained, tmp_path, capsys):
    out = tmp_path / "sb"
    args = ["finetune", str(pretrained), "--scene-bias", "--out", str(out), *FAST, "finetune.epochs=1"]
    assert main(args) == 0
    result = json.loads((out / "scene_bias.json").read_text())
    normal = json.loads((out / "normal" / "finetune.json").read_text())
    static = json.loads((out / "static" / "finetune.json").read_text())
    assert not normal["static"] and static["static"] and not static["static_test"]
    row = result["lists"]["split1"]
    assert row["normal_top1"] == normal["final"]["test"]["split1"]["top1"]
    assert row["static_top1"] == static["final"]["test"]["split1"]["top1"]
    assert list(row["classes"]) == normal["classes"]
    assert (out / "scene_bias.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    assert main(args) == 0  # both rows done: reused, not retrained
    assert "classes gaining" in capsys.readouterr().out


def test_bad_run_dir_and_missing_backbone_are_clear_errors(pretrained, tmp_path, capsys):
    assert main(["finetune", str(tmp_path / "nope")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert main(["finetune", str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(pretrained, broken)
    (broken / "backbone.safetensors").unlink()
    assert main(["finetune", str(broken), *FAST]) == 2
    err = capsys.readouterr().err
    assert "backbone.safetensors" in err and "Traceback" not in err
    assert main(["finetune", str(pretrained), "--network", "motion"]) == 2
    assert "no network 'motion'" in capsys.readouterr().err
    assert main(["finetune", str(pretrained), "trainer.max_steps=3"]) == 2
    assert "finetune.max_steps" in capsys.readouterr().err
    assert main(["finetune", str(pretrained), "finetune.dropuot=0.5"]) == 2
    assert "finetune.dropuot" in capsys.readouterr().err
    # Another dataset than the run's, without its videos: the run's UCF101-layout root is not HMDB51's.
    assert main(["finetune", str(pretrained), "-c", "configs/hmdb51/finetune-cmd.yaml", "--out", str(tmp_path / "h")]) == 2
    assert "data.root" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="finetune.lr_scaling"):
        finetune(_cfg(pretrained, "finetune.lr_scaling=sqrt"), run_dir=pretrained, out_dir=tmp_path / "x")


def test_demo_recipe_loads_on_a_demo_run_config():
    cfg = load_config(["configs/demo/moco.yaml", "configs/demo/finetune.yaml"], ["data.root=/x"],
                      schema=FinetuneRunConfig)
    assert list(cfg.finetune.test_splits) == [1, 2] and cfg.finetune.epochs >= 1
    with pytest.raises(ConfigError, match="finetune"):  # a finetune recipe is not a pretraining config
        load_config(["configs/demo/moco.yaml", "configs/demo/finetune.yaml"], ["data.root=/x"])


@pytest.mark.slow
def test_finetune_ddp_two_processes(pretrained, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "vidssl.cli", "finetune", str(pretrained), "--out", str(out), *FAST,
           "trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu", "trainer.threads=1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "finetune.json").read_text())
    # 32 videos, 8 per process, 2 processes: 2 steps per epoch; lr scaled for the global batch of 16.
    assert report["world_size"] == 2 and report["steps_per_epoch"] == 2 and report["steps"] == 4
    assert report["lr"] == pytest.approx(0.0008 * 16 / 8)
    # Each process scored half of the test list; together, every video once.
    final = report["final"]["test"]["split1"]
    assert final["videos"] == 32 and list(final["per_class_top1"]) == report["classes"]
    assert [e["epoch"] for e in report["epochs"]] == [1.0, 2.0]
