"""The ``vidssl`` command.

    vidssl make-benchmark ROOT [--preset demo] [--seed 0]
    vidssl pretrain -c CONFIG.yaml [key=value ...] [--resume]
    vidssl evaluate RUN_DIR [key=value ...] [--network NAME] | --random -c CONFIG.yaml [key=value ...]
    vidssl finetune RUN_DIR [-c RECIPE.yaml] [--network NAME] [--from-scratch] [--scene-bias] [--out DIR] [--resume]
    vidssl extract {reencode,flow,motion-vectors,motion-map} ... [--frame-size HxW] [--size HxW]
    vidssl check-videos DIR_LIST_OR_CSV [--root ROOT] [--stream N] [--out report.json]
    vidssl compare --methods a,b,c [-c CONFIG.yaml] [--out DIR] [key=value ...]
    vidssl demo [--quick] [--seed N --data DIR] [--train-seed N] [--steps N] [--methods a,b]

``key=value`` overrides may come before, between or after the options. Sizes are height x
width everywhere, as ``data.frame_size: [H, W]``. Every command that produces numbers also
writes them as JSON; ``extract`` exits 1 when any video failed, ``check-videos`` when any is
unreadable. A failure is one line, ``vidssl CMD: error: ...`` naming the file or key, with exit
code 2 for a wrong command line, config or path and 1 for a job its data or machine failed
(``vidssl.cli_errors``); ``-v`` shows the traceback.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from vidssl.io import write_json_atomic

__all__ = ["main"]


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", action="append", default=[], help="YAML config (repeatable; later wins)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.batch_size=16")


class _IntermixedParser(argparse.ArgumentParser):
    """A command's parser: positionals (``key=value`` overrides, RUN_DIR) and options in any order.

    argparse's own ``parse_intermixed_args`` cannot be used on the top-level parser (it refuses
    subparsers), so each command's parser parses intermixed when the top level hands it its
    arguments; ``parse_known_intermixed_args`` calls ``parse_known_args`` itself, hence the flag.
    """

    _intermixing = False

    def parse_known_args(self, args=None, namespace=None):
        if self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidssl", description="Self-supervised video representation learning "
                                     "that takes motion seriously.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_IntermixedParser)

    p = sub.add_parser("make-benchmark", help="generate the embedded scene-bias benchmark (UCF101 layout)")
    p.add_argument("root")
    p.add_argument("--preset", default="demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)

    p = sub.add_parser("pretrain", help="pretrain a backbone with a method")
    _add_config_args(p)
    p.add_argument("--resume", action="store_true", help="continue the run in run_dir from checkpoints/last.ckpt")

    p = sub.add_parser("evaluate", help="retrieval R@k and linear probe of a pretrained (or random) backbone")
    p.add_argument("--random", action="store_true", help="evaluate a randomly initialised backbone")
    p.add_argument("-c", "--config", action="append", default=[], help="YAML config (repeatable; later wins)")
    p.add_argument("targets", nargs="*", metavar="RUN_DIR | key=value",
                   help="a run directory from `vidssl pretrain` and/or key=value overrides")
    p.add_argument("--test-split", type=int, action="append", default=None,
                   help="test list(s) to score (default: the config's data.split)")
    p.add_argument("--out", help="JSON file for the results (default: RUN_DIR/eval.json; "
                   "RUN_DIR/eval_NAME.json with --network NAME)")
    p.add_argument("--network", default="backbone", metavar="NAME",
                   help="which of the run's networks to score (networks.json lists them; default: backbone)")
    p.add_argument("--device", default="auto")

    p = sub.add_parser("extract", help="compute motion signals or re-encode a dataset")
    p.add_argument("kind", choices=["reencode", "flow", "motion-vectors", "motion-map"])
    p.add_argument("--dataset", default="folder", help="catalog kind (ucf101, hmdb51, kinetics400, folder, csv)")
    p.add_argument("--root", required=True, help="dataset root")
    p.add_argument("--out", required=True, help="cache folder (or re-encoded dataset root)")
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--csv", default=None)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    # Every size in vidssl is height x width, as data.frame_size: [H, W] and VideoReader.size.
    p.add_argument("--size", default=None, metavar="HxW",
                   help="re-encode size, height x width, e.g. 256x340 (CoViAR: 340 wide, 256 high)")
    p.add_argument("--frame-size", default=None, metavar="HxW",
                   help="height x width the signals are computed at, the training config's data.frame_size "
                        "in the same order: data.frame_size=[128,171] is --frame-size 128x171")
    p.add_argument("--flow-dtype", default="uint8", choices=["uint8", "float16"],
                   help="flow storage: uint8 quantised at +-20 px (TV-L1 convention) or float16")
    p.add_argument("--method", default="dis", help="flow method: dis | tvl1")

    p = sub.add_parser("check-videos", help="find unreadable and damaged videos (exit 1 when any is unreadable)")
    p.add_argument("source", help="a folder (searched recursively), a video, a text file listing paths (UCF101 "
                   "split lists too), or the CSV training reads (path,label or Kinetics' CSV)")
    p.add_argument("--root", default=None, help="folder relative paths in a list or CSV are under (data.root; "
                   "default: the list's folder)")
    p.add_argument("--stream", type=int, default=None,
                   help="which video stream of each file, counted from 0 (default: the best one)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", default=None, help="JSON report (default: check_videos.json here)")

    p = sub.add_parser("finetune", help="fine-tune a pretrained backbone with labels (top-1 / top-5 on the test lists), "
                       "the scene-bias diagnostic, limited labels")
    p.add_argument("-c", "--config", action="append", default=[],
                   help="YAML recipe on top of RUN_DIR/config.yaml (repeatable; later wins), e.g. "
                        "configs/ucf101/finetune-cmd.yaml")
    p.add_argument("targets", nargs="*", metavar="RUN_DIR | key=value",
                   help="a run directory from `vidssl pretrain` and/or key=value overrides (finetune.epochs=30, ...)")
    p.add_argument("--network", default="backbone", metavar="NAME",
                   help="which of the run's RGB networks to fine-tune (networks.json lists them; default: backbone)")
    p.add_argument("--from-scratch", action="store_true",
                   help="random init of the same backbone (the reference row); without RUN_DIR, of -c's model")
    p.add_argument("--scene-bias", action="store_true",
                   help="fine-tune on static clips (one frame repeated) and on normal clips, compare per class "
                        "(DSM Fig. 1): OUT/scene_bias.json and .png")
    p.add_argument("--test-split", type=int, action="append", default=None,
                   help="test list(s) to score, sharing the train list of data.split (default: finetune.test_splits, "
                        "else data.split)")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/finetune[-scratch][-labelsPCT]"
                   "[-static], RUN_DIR/scene-bias[-scratch] with --scene-bias)")
    p.add_argument("--resume", action="store_true", help="continue the fine-tune in OUT from checkpoints/last.ckpt")

    p = sub.add_parser("compare", help="pretrain and score several methods under one budget and one backbone; "
                       "one self-contained report.html")
    p.add_argument("--methods", required=True,
                   help="comma-separated rows: recipe names in --recipes (moco,pace,...), YAML files, and the "
                        "references random, scene-only, motion-only")
    _add_config_args(p)
    p.add_argument("--out", default="runs/compare", help="output folder: one run directory per row, report.html, "
                   "report.json, results.json (default runs/compare)")
    p.add_argument("--recipes", default=None,
                   help="folder of method recipes NAME.yaml (default: the packaged configs/demo)")
    p.add_argument("--test-split", type=int, action="append", default=None,
                   help="ucf101 / hmdb51 test list(s) to score, each against its own split's train list "
                        "(default: data.split)")
    p.add_argument("--saliency-videos", type=int, default=3, help="test videos drawn with each network's saliency")
    p.add_argument("--saliency", default="grad-cam", choices=["grad-cam", "cam"], help="saliency method")
    p.add_argument("--saliency-layer", default=None, metavar="MODULE",
                   help="backbone module Grad-CAM is taken at, e.g. stages.p4 (default: the evaluated stage)")
    p.add_argument("--device", default="auto", help="where scoring runs (auto: cuda when available)")

    p = sub.add_parser("summarize", help="mean, spread and gaps (with their noise) over several compare / demo runs")
    p.add_argument("runs", nargs="+", help="run folders holding results.json")
    p.add_argument("--out", default=None, help="folder for summary.json and summary.md (default: print only)")
    p.add_argument("--metric", default="R@1", help="metric of the gaps and the table (default R@1)")
    p.add_argument("--reference", default="moco,random", help="comma-separated rows every row is compared with")
    p.add_argument("--queries", type=int, default=None,
                   help="queries per test split, for the noise of a gap (the demo's benchmark: 200)")
    p = sub.add_parser("demo", help="the main job: every method on the embedded benchmark, one table and report")
    p.add_argument("--out", default=None, help="results folder (default runs/demo, runs/demo-seedN, runs/demo-quick)")
    p.add_argument("--data", default=None,
                   help="benchmark folder, generated when absent (default data/demo-benchmark[-seedN|-quick])")
    p.add_argument("--seed", type=int, default=0, help="the benchmark's generation seed")
    p.add_argument("--train-seed", type=int, default=None, help="trainer.seed of every trained row")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps of every trained row (default: each config's)")
    p.add_argument("--quick", action="store_true", help="smoke run: a small benchmark, 20 steps per row, labelled as such")
    p.add_argument("--methods", default=None, help="comma-separated subset of rows to run")
    p.add_argument("--preset", default=None, help="benchmark preset (default demo; quick with --quick)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; a failure is one line on stderr and an exit code (``vidssl.cli_errors``)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from vidssl import cli_errors

    with warnings.catch_warnings():  # the one-line warnings below end with the command
        if not args.verbose:
            warnings.showwarning = cli_errors.warning_printer(args.command)
        try:
            return _COMMANDS[args.command](args)
        except KeyboardInterrupt:
            if args.verbose:
                raise
            print(f"vidssl {args.command}: interrupted", file=sys.stderr)
            return cli_errors.INTERRUPTED
        except Exception as err:  # noqa: BLE001 - every failure gets its one line; -v for the traceback
            if args.verbose:
                raise
            code, message = cli_errors.explain(err)
            print(f"vidssl {args.command}: error: {message}", file=sys.stderr)
            return code


def _make_benchmark(args) -> int:
    from vidssl.data.synthetic import generate_benchmark

    _check_folder(args.root, "ROOT", "a new or empty folder for the benchmark")
    root = generate_benchmark(args.root, preset=args.preset, seed=args.seed, workers=args.workers)
    print(f"benchmark written to {root}")
    return 0


def _pretrain(args) -> int:
    from vidssl.config import load_config
    from vidssl.train.run import pretrain

    _quiet_lightning(args.verbose)
    cfg = load_config(args.config, args.overrides)
    run_dir = pretrain(cfg, resume=args.resume)
    print(f"run directory: {run_dir}")
    return 0


def _evaluate(args) -> int:
    import torch

    from vidssl.config import load_config
    from vidssl.eval.protocol import evaluate_splits
    from vidssl.train.export import backbone_from_run, check_run_dir
    from vidssl.data.from_config import SPLIT_FILE, evaluation_catalogs, frame_cache_from_config

    run_dirs = [t for t in args.targets if "=" not in t]
    args.overrides = [t for t in args.targets if "=" in t]
    if len(run_dirs) > 1 or bool(run_dirs) == bool(args.random):
        raise ValueError("give either one RUN_DIR or --random (with -c CONFIG)")
    args.run_dir = str(check_run_dir(run_dirs[0])) if run_dirs else None
    paths = ([Path(args.run_dir) / "config.yaml"] if args.run_dir else []) + list(args.config)
    cfg = load_config(paths, args.overrides)
    spec, clip_input = _network_to_score(args, cfg)
    if args.run_dir:
        backbone = backbone_from_run(args.run_dir, network=args.network)
    else:
        torch.manual_seed(cfg.trainer.seed)  # before building: the random reference reproduces
        backbone = spec.build()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    # Each test list against the train list of its own split; a folder / csv dataset's held-out
    # list (data.test_fraction: the split its pretraining recorded in the run directory).
    lists = evaluation_catalogs(cfg.data, args.test_split,
                                split_file=Path(args.run_dir) / SPLIT_FILE if args.run_dir else None)
    # Unreadable videos are left out under the limit the run pretrained with (data.max_bad_fraction).
    results = evaluate_splits(backbone.to(device), lists, cfg.eval, frame_size=cfg.data.frame_size,
                              crop_size=cfg.augment.crop_size, num_workers=cfg.data.num_workers, device=device,
                              frame_cache=frame_cache_from_config(cfg.data),
                              max_bad_fraction=cfg.data.max_bad_fraction, clip_input=clip_input)
    default_out = "eval.json" if args.network == "backbone" else f"eval_{args.network}.json"
    out = Path(args.out) if args.out else (Path(args.run_dir) if args.run_dir else Path()) / default_out
    write_json_atomic(out, results)
    for name, metrics in results.items():
        print(name + ": " + "  ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in metrics.items()))
    print(f"results: {out}")
    return 0


def _finetune(args) -> int:
    from vidssl.config import FinetuneRunConfig, load_config
    from vidssl.eval.finetune import FINETUNE_FILE, check_overrides, default_out_dir, finetune
    from vidssl.train.export import check_run_dir

    run_dirs = [t for t in args.targets if "=" not in t]
    overrides = [t for t in args.targets if "=" in t]
    if len(run_dirs) > 1 or not (run_dirs or (args.from_scratch and args.config)):
        raise ValueError("give one RUN_DIR (or --from-scratch with -c CONFIG naming the model and data)")
    run_dir = Path(run_dirs[0]) if run_dirs else None
    if run_dir is not None:
        check_run_dir(run_dir)  # before its config.yaml is read
    check_overrides(overrides)
    if args.test_split:
        overrides.append(f"finetune.test_splits=[{','.join(str(s) for s in args.test_split)}]")
    cfg = load_config(([run_dir / "config.yaml"] if run_dir else []) + list(args.config), overrides,
                      schema=FinetuneRunConfig)
    if args.scene_bias:
        from vidssl.eval.scene_bias import SCENE_BIAS_FILE, scene_bias

        out = Path(args.out) if args.out else (run_dir or Path("runs")) / ("scene-bias-scratch" if args.from_scratch
                                                                          else "scene-bias")
        result = scene_bias(cfg, run_dir=run_dir, out_dir=out, network=args.network, from_scratch=args.from_scratch,
                            resume=args.resume)
        for name, row in result["lists"].items():
            share = row["share_under_threshold"]
            print(f"{name}: top-1 normal {row['normal_top1']:.1f}  static {row['static_top1']:.1f}  classes gaining "
                  f"< {result['threshold_percent']:g}%: {'-' if share is None else f'{share:.0f}%'}")
        print(f"results: {out / SCENE_BIAS_FILE}")
        return 0
    out = Path(args.out) if args.out else default_out_dir(run_dir, network=args.network, from_scratch=args.from_scratch,
                                                          label_fraction=cfg.finetune.label_fraction,
                                                          static=cfg.finetune.static)
    finetune(cfg, run_dir=run_dir, out_dir=out, network=args.network, from_scratch=args.from_scratch,
             resume=args.resume)
    import json

    report = json.loads((out / FINETUNE_FILE).read_text())
    for name, metrics in report["final"]["test"].items():
        print(f"{name}: top-1 {metrics['top1']:.1f}  top-5 {metrics['top5']:.1f}")
    print(f"results: {out / FINETUNE_FILE}")
    return 0


def _network_to_score(args, cfg):
    """``(spec, clip_input)`` of ``--network`` (a run's, from networks.json; or the config's, for
    --random): ``clip_input`` None for a network taking RGB clips, else what its method feeds it
    (``Method.network_input``, e.g. cmd's M-network: motion vectors); refused when neither."""
    from vidssl.methods.base import backbone_spec, method_class, method_config, network_specs
    from vidssl.train.export import run_network_specs

    if args.run_dir:
        specs = run_network_specs(args.run_dir)
    else:
        specs = {"backbone": backbone_spec(cfg.model)}
        if args.network != "backbone":
            specs.update(network_specs(cfg.method.get("name", ""), cfg.model))
    where = args.run_dir or "the config"
    if args.network not in specs:
        raise KeyError(f"--network: {where} has no network {args.network!r}; it has: {', '.join(specs)}")
    spec = specs[args.network]
    if spec is None or spec.in_channels == 3:
        return spec, None
    name = cfg.method.get("name", "")
    clip_input = method_class(name).network_input(args.network, method_config(name, cfg.method))
    if clip_input is None:
        rgb = [n for n, s in specs.items() if s is not None and s.in_channels == 3]
        raise ValueError(f"--network {args.network}: {spec.describe()} expects {spec.in_channels}-channel input, "
                         f"not the RGB clips (3 channels) evaluate feeds it; networks it can score here: "
                         f"{', '.join(rgb) or 'none'}")
    return spec, clip_input


def _extract(args) -> int:
    from vidssl import extract

    _check_folder(args.out, "--out", "the folder to write to")
    if args.kind == "reencode":
        _check_folder(args.root, "--root", "the folder of the videos to re-encode")
        size = _pair(args.size, "--size") if args.size else None  # (H, W)
        report = extract.reencode_dataset(args.root, args.out, size=size, workers=args.workers)
    else:
        from vidssl.config import DataConfig
        from vidssl.data.from_config import catalog_from_config

        data = DataConfig(dataset=args.dataset, root=args.root, split=args.split, csv=args.csv)
        catalogs = [catalog_from_config(data, "train")]
        if args.dataset in ("ucf101", "hmdb51", "kinetics400"):
            catalogs.append(catalog_from_config(data, "test"))
        paths = sorted({r.path for c in catalogs for r in c.records})
        frame_size = _pair(args.frame_size, "--frame-size") if args.frame_size else None  # (H, W)
        report = extract.extract_signals(paths, args.kind, args.out, root=args.root, workers=args.workers,
                                         flow_method=args.method, frame_size=frame_size,
                                         flow_dtype=args.flow_dtype)
    summary = report.to_dict()
    out = Path(args.out) / f"extract_{args.kind}_rank{report.rank}.json"
    write_json_atomic(out, summary)
    print(f"{args.kind}: {report.done} computed, {report.skipped} already there, {len(report.failed)} failed "
          f"({report.seconds:.0f} s); report: {out}")
    for path, reason in list(report.failed.items())[:20]:
        print(f"  {path}: {reason}")
    return 1 if report.failed else 0


def _pair(text: str, option: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"{option}: expected HxW (height x width) such as 256x340, got {text!r}") from None
    if a <= 0 or b <= 0:
        raise ValueError(f"{option}: height and width must be positive, got {text!r}")
    return a, b


def _check_videos(args) -> int:
    from vidssl.video.check import VIDEO_EXTENSIONS, check_videos, collect_video_paths

    paths = collect_video_paths(args.source, root=args.root)
    if not paths:
        raise ValueError(f"{args.source}: no videos to check (extensions looked for: "
                         f"{', '.join(VIDEO_EXTENSIONS)})")
    report = check_videos(paths, workers=args.workers, stream=args.stream)
    out = Path(args.out or "check_videos.json")
    report.write_json(out)
    print(f"{report.ok} readable, {len(report.bad)} unreadable, {len(report.damaged)} damaged; report: {out}")
    for what, listed in (("unreadable", report.bad), ("damaged", report.damaged)):
        for path, reason in listed[:20]:
            print(f"  {what} {path}: {reason}")
        if len(listed) > 20:
            print(f"  ... and {len(listed) - 20} more {what}, listed in {out}")
    return 0 if not report.bad else 1


def _compare(args) -> int:
    from vidssl.eval.compare import compare

    methods = [m for m in args.methods.split(",") if m.strip()]
    splits = {f"split{n}": n for n in args.test_split} if args.test_split else None
    compare(methods, args.out, configs=args.config, overrides=args.overrides, recipes=args.recipes, splits=splits,
            saliency_videos=args.saliency_videos, saliency_method=args.saliency, saliency_layer=args.saliency_layer,
            device=args.device)
    return 0


def _demo(args) -> int:
    from vidssl.demo import run_demo

    methods = args.methods.split(",") if args.methods else None
    # Each benchmark and training seed gets its own folders, so no run reuses (or deletes) another's rows.
    bench = "-quick" if args.quick else (f"-seed{args.seed}" if args.seed else "")
    train = f"-train{args.train_seed}" if args.train_seed is not None else ""
    _check_folder(args.data, "--data", "a new or empty folder for the benchmark")
    _check_folder(args.out, "--out", "a new or empty folder for the results")
    run_demo(out_dir=args.out or f"runs/demo{bench}{train}", data_root=args.data or f"data/demo-benchmark{bench}",
             steps=args.steps, methods=methods, preset=args.preset or ("quick" if args.quick else "demo"),
             seed=args.seed, train_seed=args.train_seed, quick=args.quick)
    return 0


def _summarize(args) -> int:
    from vidssl.eval.runs import format_summary, load_run, summarize_runs, write_summary

    refs = [r for r in args.reference.split(",") if r.strip()]
    summary = summarize_runs([load_run(path) for path in args.runs], metric=args.metric, references=refs,
                             queries=args.queries)
    print(format_summary(summary), end="")
    if args.out:
        write_summary(summary, args.out)
    return 0


def _quiet_lightning(verbose: bool) -> None:
    """Lightning's INFO lines (accelerators found, a tip), printed twice (its own console handler and
    the root's), only with -v. Called once Lightning is imported: its import sets the level to INFO."""
    if not verbose:
        logging.getLogger("lightning").setLevel(logging.WARNING)
        logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
        logging.getLogger("lightning.fabric").setLevel(logging.WARNING)


def _check_folder(path: str | None, option: str, what: str) -> None:
    """Refuse a file given where a folder is read or written (mkdir would say only "File exists")."""
    if path is not None and Path(path).exists() and not Path(path).is_dir():
        raise NotADirectoryError(f"{option} {path}: is a file, not a folder; give {what}")


_COMMANDS = {"make-benchmark": _make_benchmark, "pretrain": _pretrain, "evaluate": _evaluate, "finetune": _finetune,
             "extract": _extract, "check-videos": _check_videos, "compare": _compare, "demo": _demo,
             "summarize": _summarize}

if __name__ == "__main__":
    sys.exit(main())
