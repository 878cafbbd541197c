"""The ``vidssl`` command.

    vidssl make-benchmark ROOT [--preset demo] [--seed 0]
    vidssl pretrain -c CONFIG.yaml [key=value ...] [--resume]
    vidssl evaluate RUN_DIR [key=value ...] | --random -c CONFIG.yaml [key=value ...]
    vidssl extract {reencode,flow,motion-vectors,motion-map} ...
    vidssl check-videos DIR_OR_LIST [--out report.json]
    vidssl demo [--out runs/demo] [--budget 90]

Every command that produces numbers also writes them as JSON.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from vidssl.io import write_json_atomic

__all__ = ["main"]


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", action="append", default=[], help="YAML config (repeatable; later wins)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.batch_size=16")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidssl", description="Self-supervised video representation learning "
                                     "that takes motion seriously.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

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
    p.add_argument("--out", help="JSON file for the results (default: RUN_DIR/eval.json)")
    p.add_argument("--device", default="auto")

    p = sub.add_parser("extract", help="compute motion signals or re-encode a dataset")
    p.add_argument("kind", choices=["reencode", "flow", "motion-vectors", "motion-map"])
    p.add_argument("--dataset", default="folder", help="catalog kind (ucf101, hmdb51, kinetics400, folder, csv)")
    p.add_argument("--root", required=True, help="dataset root")
    p.add_argument("--out", required=True, help="cache folder (or re-encoded dataset root)")
    p.add_argument("--split", type=int, default=1)
    p.add_argument("--csv", default=None)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--size", default=None, help="re-encode size WxH, e.g. 340x256 (CoViAR)")
    p.add_argument("--frame-size", default=None,
                   help="WxH the signals are computed at; match the training config's data.frame_size")
    p.add_argument("--flow-dtype", default="uint8", choices=["uint8", "float16"],
                   help="flow storage: uint8 quantised at +-20 px (TV-L1 convention) or float16")
    p.add_argument("--method", default="dis", help="flow method: dis | tvl1")

    p = sub.add_parser("check-videos", help="find unreadable videos")
    p.add_argument("source", help="a folder (searched recursively) or a text file listing paths")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--out", default=None, help="JSON report (default: check_videos.json here)")

    p = sub.add_parser("demo", help="the main job: every method on the embedded benchmark, one table")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--data", default="data/demo-benchmark")
    p.add_argument("--budget", type=float, default=None, help="seconds of pretraining per method")
    p.add_argument("--methods", default=None, help="comma-separated subset of rows to run")
    p.add_argument("--preset", default="demo")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from vidssl.config import ConfigError

    try:
        return _COMMANDS[args.command](args)
    except (ConfigError, FileNotFoundError, FileExistsError, KeyError, ValueError) as err:
        # User errors: one clear line, no traceback (use -v for one).
        if args.verbose:
            raise
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"vidssl {args.command}: error: {msg}", file=sys.stderr)
        return 2


def _make_benchmark(args) -> int:
    from vidssl.data.synthetic import generate_benchmark

    root = generate_benchmark(args.root, preset=args.preset, seed=args.seed, workers=args.workers)
    print(f"benchmark written to {root}")
    return 0


def _pretrain(args) -> int:
    from vidssl.config import load_config
    from vidssl.train.run import pretrain

    cfg = load_config(args.config, args.overrides)
    run_dir = pretrain(cfg, resume=args.resume)
    print(f"run directory: {run_dir}")
    return 0


def _evaluate(args) -> int:
    import torch

    from vidssl.config import load_config
    from vidssl.eval.protocol import evaluate_backbone
    from vidssl.models import build_backbone
    from vidssl.train.export import load_backbone
    from vidssl.data.from_config import catalog_from_config, frame_cache_from_config

    run_dirs = [t for t in args.targets if "=" not in t]
    args.overrides = [t for t in args.targets if "=" in t]
    if len(run_dirs) > 1 or bool(run_dirs) == bool(args.random):
        raise ValueError("give either one RUN_DIR or --random (with -c CONFIG)")
    args.run_dir = run_dirs[0] if run_dirs else None
    paths = ([Path(args.run_dir) / "config.yaml"] if args.run_dir else []) + list(args.config)
    cfg = load_config(paths, args.overrides)
    backbone = build_backbone(cfg.model.backbone, width=cfg.model.width, depth=cfg.model.depth)
    if args.run_dir:
        load_backbone(backbone, Path(args.run_dir) / "backbone.safetensors")
    else:
        torch.manual_seed(cfg.trainer.seed)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    train = catalog_from_config(cfg.data, "train")
    tests = {}
    for split in args.test_split or [cfg.data.split]:
        cfg.data.split = split
        tests[f"split{split}"] = catalog_from_config(cfg.data, "test")
    results = evaluate_backbone(backbone.to(device), train, tests, cfg.eval, frame_size=cfg.data.frame_size,
                                crop_size=cfg.augment.crop_size, num_workers=cfg.data.num_workers, device=device,
                                frame_cache=frame_cache_from_config(cfg.data))
    out = Path(args.out) if args.out else (Path(args.run_dir) / "eval.json" if args.run_dir else Path("eval.json"))
    write_json_atomic(out, results)
    for name, metrics in results.items():
        print(name + ": " + "  ".join(f"{k} {v:.1f}" for k, v in metrics.items()))
    print(f"results: {out}")
    return 0


def _extract(args) -> int:
    from vidssl import extract

    if args.kind == "reencode":
        size = _pair(args.size, "--size") if args.size else None  # W x H
        report = extract.reencode_dataset(args.root, args.out, size=size, workers=args.workers)
    else:
        from vidssl.config import DataConfig
        from vidssl.data.from_config import catalog_from_config

        data = DataConfig(dataset=args.dataset, root=args.root, split=args.split, csv=args.csv)
        catalogs = [catalog_from_config(data, "train")]
        if args.dataset in ("ucf101", "hmdb51", "kinetics400"):
            catalogs.append(catalog_from_config(data, "test"))
        paths = sorted({r.path for c in catalogs for r in c.records})
        frame_size = tuple(reversed(_pair(args.frame_size, "--frame-size"))) if args.frame_size else None
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
    return 0


def _pair(text: str, option: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"{option}: expected WxH such as 340x256, got {text!r}") from None
    return a, b


def _check_videos(args) -> int:
    from vidssl.video.check import check_videos, collect_video_paths

    paths = collect_video_paths(args.source)
    report = check_videos(paths, workers=args.workers)
    out = Path(args.out or "check_videos.json")
    report.write_json(out)
    print(f"{report.ok} readable, {len(report.bad)} unreadable; report: {out}")
    for path, reason in report.bad[:20]:
        print(f"  {path}: {reason}")
    return 0 if not report.bad else 1


def _demo(args) -> int:
    from vidssl.demo import run_demo

    methods = args.methods.split(",") if args.methods else None
    run_demo(out_dir=args.out, data_root=args.data, budget=args.budget, methods=methods, preset=args.preset)
    return 0


_COMMANDS = {"make-benchmark": _make_benchmark, "pretrain": _pretrain, "evaluate": _evaluate,
             "extract": _extract, "check-videos": _check_videos, "demo": _demo}

if __name__ == "__main__":
    sys.exit(main())
