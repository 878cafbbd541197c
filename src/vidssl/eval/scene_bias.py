"""The scene-bias diagnostic of DSM (Wang et al., AAAI 2021, sec. 1 and Fig. 1).

"We conduct an experiment ... by training models with two types of clips. One type of the clips
are formed by repeating a frame that is randomly selected from a video, which have lost motion
information and only the scene and static status are left. The other type of the clips are normal
videos ... we find that there are nearly 24% of the categories show less than 5% or no improvement
with the help of motion information."

``scene_bias`` fine-tunes the same backbone twice (``vidssl.eval.finetune``), on static clips
(``finetune.static``) and on normal ones, into ``OUT/static`` and ``OUT/normal``, and compares their
per-class top-1 on each test list: the relative improvement ``(normal - static) / static`` of every
class, its mean, and the share of classes whose improvement is under 5 %. The paper tests both
models on normal clips, which is the default here; ``finetune.static_test=true`` tests the static
one on static clips instead (then every test clip is scene only). ``OUT/scene_bias.json`` holds the
numbers and ``OUT/scene_bias.png`` the per-class bars. A finished fine-tune with the same settings is
reused, an interrupted one continued with ``resume``; any dataset and any run work.
"""
from __future__ import annotations

import copy
import io
import json
import math
from pathlib import Path
from typing import Any, Mapping

from vidssl.eval.finetune import FINETUNE_FILE, recorded_config, finetune
from vidssl.io import write_bytes_atomic, write_json_atomic

__all__ = ["scene_bias", "compare_static_normal", "SCENE_BIAS_FILE", "THRESHOLD"]

SCENE_BIAS_FILE = "scene_bias.json"
THRESHOLD = 5.0  # percent relative improvement (DSM: "less than 5% or no improvement")


def scene_bias(cfg, *, run_dir, out_dir, network: str = "backbone", from_scratch: bool = False,
               resume: bool = False) -> dict[str, Any]:
    """Fine-tune on normal and on static clips, compare per class; returns what scene_bias.json holds."""
    out_dir = Path(out_dir)
    reports = {}
    for kind in ("normal", "static"):
        kind_cfg = copy.deepcopy(cfg)
        kind_cfg.finetune.static = kind == "static"
        if kind == "normal":
            kind_cfg.finetune.static_test = False
        folder = out_dir / kind
        reports[kind] = _finished(folder, kind_cfg)
        if reports[kind] is None:
            again = resume and (folder / "checkpoints" / "last.ckpt").is_file()
            finetune(kind_cfg, run_dir=run_dir, out_dir=folder, network=network, from_scratch=from_scratch,
                     resume=again)
            reports[kind] = json.loads((folder / FINETUNE_FILE).read_text())
    result = {"format": "vidssl-scene-bias", "threshold_percent": THRESHOLD, "run_dir": reports["normal"]["run_dir"],
              "init": reports["normal"]["init"], "backbone": reports["normal"]["backbone"],
              "static_test": bool(reports["static"]["static_test"]),
              "normal": f"normal/{FINETUNE_FILE}", "static": f"static/{FINETUNE_FILE}",
              "lists": compare_static_normal(reports["normal"]["final"]["test"], reports["static"]["final"]["test"],
                                             reports["normal"]["classes"])}
    write_json_atomic(out_dir / SCENE_BIAS_FILE, result)
    write_bytes_atomic(out_dir / "scene_bias.png", bar_chart_png(result))
    return result


def compare_static_normal(normal: Mapping[str, Any], static: Mapping[str, Any], classes: list[str],
                          threshold: float = THRESHOLD) -> dict[str, Any]:
    """Per test list: each class's top-1 both ways and relative improvement (percent), their mean,
    and the share of classes improving by less than ``threshold`` percent.

    ``normal`` and ``static`` are ``{test list: {"top1", "per_class_top1": {class: %}}}`` (the
    ``final.test`` of each finetune.json).

    A class the static model never recognises has no relative improvement (None) and counts as
    improving (unbounded) when the normal one does, as not improving when neither does. Classes
    without test videos are left out of the share.
    """
    lists = {}
    for name, result in normal.items():
        if name not in static:
            raise ValueError(f"the static fine-tune has no test list {name!r} (it has {sorted(static)})")
        rows, gains, under = {}, [], []
        for cls in classes:
            n, s = result["per_class_top1"].get(cls), static[name]["per_class_top1"].get(cls)
            if n is None or s is None:
                rows[cls] = {"normal": n, "static": s, "relative_improvement": None}
                continue
            gain = (n - s) / s * 100.0 if s > 0 else (0.0 if n == 0 else math.inf)
            rows[cls] = {"normal": n, "static": s, "relative_improvement": gain if math.isfinite(gain) else None}
            gains.append(gain)
            if gain < threshold:
                under.append(cls)
        finite = [g for g in gains if math.isfinite(g)]
        lists[name] = {"normal_top1": result["top1"], "static_top1": static[name]["top1"], "classes": rows,
                       "mean_relative_improvement": sum(finite) / len(finite) if finite else None,
                       "classes_under_threshold": under,
                       "share_under_threshold": 100.0 * len(under) / len(gains) if gains else None}
    if not lists:
        raise ValueError("the normal fine-tune holds no per-class test results")
    return lists


def bar_chart_png(result: Mapping[str, Any]) -> bytes:
    """Per test list: static vs normal top-1 per class (top) and the relative improvement (bottom)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lists = result["lists"]
    fig = Figure(figsize=(max(5.0, 0.55 * max(len(v["classes"]) for v in lists.values()) + 2) * len(lists), 6.0),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(lists), squeeze=False)
    for col, (name, data) in enumerate(lists.items()):
        classes = list(data["classes"])
        xs = range(len(classes))
        top, bottom = axes[0][col], axes[1][col]
        for offset, kind in ((-0.2, "static"), (0.2, "normal")):
            values = [math.nan if data["classes"][c][kind] is None else data["classes"][c][kind] for c in classes]
            top.bar([x + offset for x in xs], values, 0.4, label=f"{kind} clips ({data[kind + '_top1']:.1f})")
        top.set(ylabel="top-1 %", ylim=(0, 105), title=f"{name}: fine-tuned on static vs normal clips")
        top.set_xticks(list(xs), classes, rotation=40, ha="right", fontsize=7)
        top.legend(fontsize=7)
        gains = [data["classes"][c]["relative_improvement"] for c in classes]
        bottom.bar(list(xs), [math.nan if g is None else g for g in gains],
                   color=["tab:red" if c in data["classes_under_threshold"] else "tab:green" for c in classes])
        for x, c in zip(xs, classes):  # static 0 %, normal above: no finite ratio, marked
            row = data["classes"][c]
            if row["relative_improvement"] is None and row["static"] == 0 and (row["normal"] or 0) > 0:
                bottom.annotate("static 0", (x, 0), ha="center", va="bottom", fontsize=7, rotation=90)
        bottom.axhline(result["threshold_percent"], color="k", lw=0.8, ls="--")
        share = data["share_under_threshold"]
        bottom.set(ylabel="relative improvement %",
                   title=f"{'-' if share is None else f'{share:.0f}'}% of classes gain < {result['threshold_percent']:g}%")
        bottom.set_xticks(list(xs), classes, rotation=40, ha="right", fontsize=7)
        for ax in (top, bottom):
            ax.grid(axis="y", alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _finished(folder: Path, cfg) -> dict | None:
    """The finished fine-tune in ``folder`` made with ``cfg``'s settings; None when there is none."""
    path = folder / FINETUNE_FILE
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text())
    except ValueError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if report.get("status") != "done":
        return None
    if report.get("config") != recorded_config(cfg):
        raise FileExistsError(f"{folder} holds a finished fine-tune with other settings; choose another --out "
                              f"(or delete it)")
    return report
