"""Several checkpoints in one table: a plain comparison, or the paper's ablation table (rows: full, no positional
prior, no features, consistent-input, no position skip, no colour skip) with the paper's own numbers beside ours.

A run is named `LABEL=PATH` or just `PATH`; PATH is a checkpoint file, a shard folder, or a `train` run folder
(its `model.safetensors`). Without a label the ablation row is read from the checkpoint's recorded training
config: consistent_inputs, use_pos_prior, pos_skip, rgb_skip; "no features" when feat_dim is 0 while another run
in the list has features; "full" otherwise."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from stages.errors import BadInput
from stages.evaluate.report import fmt

ABLATION_ROWS = ("full", "no positional prior", "no features", "consistent-input", "no position skip",
                 "no colour skip")
# REFERENCE.md, "The paper": the ablation reports PSNR for every row, AKD only for full vs consistent-input.
PAPER_ABLATION = {"full": {"psnr": 22.05, "akd": 8.08}, "no positional prior": {"psnr": 21.1},
                  "no features": {"psnr": 20.9}, "consistent-input": {"psnr": 21.2, "akd": 8.86},
                  "no position skip": {"psnr": 21.39}, "no colour skip": {"psnr": 21.76}}
ABLATION_KEYS = ("psnr", "ssim", "lpips", "akd", "csim")


@dataclass
class Run:
    label: str | None
    checkpoint: Path


def parse_run(text: str) -> Run:
    """`LABEL=PATH` or `PATH` -> Run with the checkpoint path resolved (a run folder gives its model file)."""
    label, sep, path = text.partition("=")
    if not sep:
        label, path = "", text
    p = Path(path).expanduser()
    if p.is_dir() and (p / "model.safetensors").is_file():
        p = p / "model.safetensors"
    if not p.exists():
        raise BadInput("checkpoint or run folder not found", p)
    return Run(label.strip() or None, p)


def _checkpoint_meta(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not files:
        raise BadInput("checkpoint folder holds no .safetensors files", path)
    try:
        with safe_open(str(files[0]), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises several types for a corrupt header
        raise BadInput(f"not a readable checkpoint ({exc})", files[0]) from exc


def run_settings(path: Path) -> dict:
    """The ablation-relevant settings recorded in a checkpoint: model config and training options."""
    meta = _checkpoint_meta(path)
    cfg = json.loads(meta.get("config", "{}"))
    train = json.loads(meta.get("train_config", "{}")) if meta.get("train_config") else {}
    return {"use_pos_prior": cfg.get("use_pos_prior", True), "pos_skip": cfg.get("pos_skip", True),
            "rgb_skip": cfg.get("rgb_skip", True), "feat_dim": int(cfg.get("feat_dim", 0)),
            "consistent_inputs": bool(train.get("consistent_inputs", False))}


def ablation_labels(runs: list[Run]) -> list[str]:
    """Each run's ablation row (given or inferred); BadInput for unknown labels or two runs on one row."""
    settings = [run_settings(r.checkpoint) for r in runs]
    any_features = any(s["feat_dim"] > 0 for s in settings)
    labels = []
    for run, s in zip(runs, settings, strict=True):
        if run.label is not None:
            if run.label not in ABLATION_ROWS:
                raise BadInput(f"ablation label {run.label!r} is not one of: {', '.join(ABLATION_ROWS)}")
            labels.append(run.label)
            continue
        flags = [name for name, on in (("consistent-input", s["consistent_inputs"]),
                                       ("no positional prior", not s["use_pos_prior"]),
                                       ("no position skip", not s["pos_skip"]),
                                       ("no colour skip", not s["rgb_skip"]),
                                       ("no features", any_features and s["feat_dim"] == 0)) if on]
        if len(flags) > 1:
            raise BadInput(f"run differs from the full model in several ways ({', '.join(flags)}); name its row "
                           "as LABEL=PATH", run.checkpoint)
        labels.append(flags[0] if flags else "full")
    seen: dict[str, Path] = {}
    for label, run in zip(labels, runs, strict=True):
        if label in seen:
            raise BadInput(f"two runs map to the ablation row {label!r} ({seen[label]} and {run.checkpoint}); "
                           "name them as LABEL=PATH", run.checkpoint)
        seen[label] = run.checkpoint
    return labels


def ablation_table(results: dict[str, dict]) -> str:
    """The paper's ablation shape from {row label: evaluation report}; rows without a run show only the paper."""
    head = ["| variant | " + " | ".join(k.upper() for k in ABLATION_KEYS) + " | paper PSNR | paper AKD | checkpoint |",
            "|" + "---|" * (len(ABLATION_KEYS) + 4)]
    lines = []
    for row in ABLATION_ROWS:
        paper = PAPER_ABLATION[row]
        rep = results.get(row)
        ours = rep["mean"]["avat3r"] if rep else {}
        vals = " | ".join(fmt(k, ours.get(k)) for k in ABLATION_KEYS)
        ckpt = Path(rep["checkpoint"]).as_posix() if rep and rep.get("checkpoint") else "—"
        lines.append(f"| {row} | {vals} | {fmt('psnr', paper.get('psnr'))} | {fmt('akd', paper.get('akd'))} | "
                     f"{ckpt} |")
    any_rep = next(iter(results.values()), {})
    res = any_rep.get("protocol", {}).get("resolution")
    notes = ["", "Ours: avat3r row of each run's evaluation (mean over subjects); AKD is AKD-MP68 in pixels"
             + (f" at {res}²" if res else "") + ", CSIM the raw dlib cosine. Paper: Ava256 at 512², its own "
             "detectors (only PSNR, and AKD for full vs consistent-input, are published for the ablation)."]
    return "\n".join(head + lines + notes) + "\n"


def comparison_table(results: dict[str, dict]) -> str:
    """Several checkpoints, one row each (their avat3r mean), in the order given."""
    keys: list[str] = []
    for rep in results.values():
        keys += [k for k in rep["mean"]["avat3r"] if k not in keys]
    lines = ["| checkpoint | " + " | ".join(k.upper() for k in keys) + " |", "|" + "---|" * (len(keys) + 1)]
    for label, rep in results.items():
        lines.append(f"| {label} | " + " | ".join(fmt(k, rep["mean"]["avat3r"].get(k)) for k in keys) + " |")
    return "\n".join(lines) + "\n"
