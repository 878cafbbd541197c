"""Every paper recipe's documented command is a working command.

Each recipe (``configs/<dataset>/*.yaml``, everything but the demo's) says in its header how to
run it. These tests take that line as written, check that it parses and names the recipe, and
run it for two steps on the tiny generated benchmark with a tiny network: only the data paths,
the sizes and the step budget are replaced. Fine-tuning recipes (``finetune-*.yaml``) document a
``vidssl finetune RUN_DIR`` line whose RUN_DIR is a pretraining recipe's run directory.
"""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from conftest import tiny_overrides
from vidssl.cli import build_parser, main
from vidssl.config import load_config
from vidssl.methods.base import method_config

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (REPO / "src" / "vidssl" / "configs").glob("*/*.yaml")
                 if p.parent.name != "demo" and not p.name.startswith("finetune-"))
FINETUNE_RECIPES = sorted(p for p in (REPO / "src" / "vidssl" / "configs").glob("*/finetune-*.yaml")
                          if p.parent.name != "demo")


def documented_command(recipe: Path) -> list[str]:
    """The ``vidssl ...`` line of the recipe's header comment, as argv (without ``vidssl``)."""
    lines = [line.lstrip("#").strip() for line in recipe.read_text().splitlines() if line.startswith("#")]
    commands = [line for line in lines if line.startswith("vidssl ")]
    assert len(commands) == 1, f"{recipe}: expected one documented `vidssl` command, found {commands}"
    return shlex.split(commands[0])[1:]


def test_there_are_paper_recipes():
    assert {p.parent.name for p in RECIPES} >= {"ucf101", "kinetics400"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_documented_command_parses_and_loads_the_recipe(recipe):
    argv = documented_command(recipe)
    args = build_parser().parse_args(argv)
    assert args.command == "pretrain"
    assert [(REPO / c).resolve() for c in args.config] == [recipe.resolve()]
    assert all("=" in o for o in args.overrides), args.overrides
    cfg = load_config([REPO / c for c in args.config], args.overrides)
    assert cfg.data.root != "???"
    assert cfg.data.dataset == recipe.parent.name


def _kinetics_like(benchmark: Path, root: Path) -> Path:
    """The tiny benchmark's videos as a Kinetics-400 folder with its official CSV columns."""
    rows = ["label,youtube_id,time_start,time_end,split"]
    for i, video in enumerate(sorted(benchmark.rglob("*.avi"))[::4]):
        target = root / "train" / video.parent.name / f"vid{i:08d}_{0:06d}_{10:06d}.avi"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(video)
        rows.append(f"{video.parent.name},vid{i:08d},0,10,train")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root / "train.csv"


# Sizes and budget only; the recipe's method, backbone kind and schedule stay as written.
SMALL = {"model.width": 4, "method.clip_len": 4, "method.max_pace": 2, "method.proj_dim": 8,
         "trainer.max_steps": 2, "trainer.checkpoint_every_n_steps": 2}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_documented_command_runs(recipe, tiny_benchmark, tmp_path):
    argv = documented_command(recipe)
    data = {"data.root": tiny_benchmark}
    if recipe.parent.name == "kinetics400":
        data = {"data.root": tmp_path / "k400", "data.csv": _kinetics_like(tiny_benchmark, tmp_path / "k400")}
    argv = [a for a in argv if a.split("=", 1)[0] not in data]
    keep = ("model.backbone", "model.depth")  # the recipe's network, only narrower
    # Only the size keys the recipe's method has (method.max_pace is pace's alone).
    paths, given = [REPO / c for c in build_parser().parse_args(argv).config], [f"{k}={v}" for k, v in data.items()]
    method = load_config(paths, given).method["name"]
    sizes = {k: v for k, v in SMALL.items() if not k.startswith("method.") or hasattr(method_config(method, {}), k[7:])}
    small = [o for o in tiny_overrides(tiny_benchmark, tmp_path / "run", **sizes) if o.split("=", 1)[0] not in keep]
    small += [f"{k}={v}" for k, v in data.items()]
    assert main([*argv, *small]) == 0
    assert (tmp_path / "run" / "backbone.safetensors").is_file()


def test_there_are_finetune_recipes_for_every_paper():
    names = {(p.parent.name, p.stem) for p in FINETUNE_RECIPES}
    assert names >= {(d, f"finetune-{m}") for d in ("ucf101", "hmdb51") for m in ("cmd", "dsm", "mcl", "pace")}


def _pretrain_recipe_of(run_dir: str) -> Path:
    """The pretraining recipe whose run_dir is ``run_dir`` (what a finetune recipe's command fine-tunes)."""
    from omegaconf import OmegaConf

    for recipe in RECIPES:
        if OmegaConf.load(recipe).get("run_dir") == run_dir:
            return recipe
    raise AssertionError(f"no pretraining recipe writes {run_dir}")


@pytest.mark.parametrize("recipe", FINETUNE_RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_finetune_recipe_command_parses_and_loads(recipe):
    from vidssl.config import FinetuneRunConfig

    args = build_parser().parse_args(documented_command(recipe))
    assert args.command == "finetune"
    assert [(REPO / c).resolve() for c in args.config] == [recipe.resolve()]
    run_dirs = [t for t in args.targets if "=" not in t]
    overrides = [t for t in args.targets if "=" in t]
    assert len(run_dirs) == 1, args.targets
    pretrain_recipe = _pretrain_recipe_of(run_dirs[0])
    assert recipe.stem.split("-", 1)[1] in pretrain_recipe.stem  # finetune-cmd fine-tunes a cmd run
    # As on top of the run's config.yaml: the pretraining recipe with its documented data.root.
    pretrain_overrides = build_parser().parse_args(documented_command(pretrain_recipe)).overrides
    cfg = load_config([pretrain_recipe, REPO / args.config[0]], [*pretrain_overrides, *overrides],
                      schema=FinetuneRunConfig)
    assert cfg.data.dataset == recipe.parent.name
    if recipe.parent.name == "hmdb51":
        assert any(o.startswith("data.root=") for o in overrides), "an HMDB51 recipe names the HMDB51 videos"


def _hmdb_like(benchmark: Path, root: Path) -> Path:
    """The tiny benchmark's split-1 videos in HMDB51's layout: <class>/<video>.avi and one
    <class>_test_split1.txt per class (tag 1 train, 2 test)."""
    from vidssl.data.catalogs import ucf101

    lines: dict[str, list[str]] = {}
    for subset, tag in (("train", 1), ("test", 2)):
        catalog = ucf101(benchmark, split=1, subset=subset)
        for record in catalog.records:
            name = catalog.classes[record.label]
            target = root / name / Path(record.path).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(record.path)
            lines.setdefault(name, []).append(f"{target.name} {tag}")
    (root / "testTrainMulti_7030_splits").mkdir()
    for name, rows in lines.items():
        (root / "testTrainMulti_7030_splits" / f"{name}_test_split1.txt").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def tiny_run(tiny_supervised_run):
    return tiny_supervised_run


# Budget and sizes only; the recipe's optimiser, schedule, dropout and lr rule stay as written.
FINETUNE_SMALL = ["finetune.max_steps=2", "finetune.batch_size=4", "finetune.clip_len=4", "finetune.num_clips=1",
                  "trainer.checkpoint_every_n_steps=2", "trainer.progress=false"]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", FINETUNE_RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_finetune_recipe_command_runs(recipe, tiny_run, tiny_benchmark, tmp_path):
    import json

    args = build_parser().parse_args(documented_command(recipe))
    overrides = [t for t in args.targets if "=" in t and not t.startswith("data.root=")]
    if recipe.parent.name == "hmdb51":
        overrides.append(f"data.root={_hmdb_like(tiny_benchmark, tmp_path / 'hmdb')}")
    out = tmp_path / "ft"
    assert main(["finetune", str(tiny_run), "-c", str(REPO / args.config[0]), *overrides, *FINETUNE_SMALL,
                 "--out", str(out)]) == 0
    report = json.loads((out / "finetune.json").read_text())
    assert report["status"] == "done" and report["steps"] == 2
    assert report["train_list"].startswith(recipe.parent.name)
