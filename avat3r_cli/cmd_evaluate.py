"""`avat3r evaluate`: held-out subjects, the paper's protocol, our model against no-learning baselines; several
checkpoints side by side or in the paper's ablation table."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer

from avat3r_cli.common import DeviceOpt, ForceOpt, QuietOpt, SeedOpt, command, output_folder, start_run
from stages.errors import BadInput


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "run"


@command
def evaluate_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder: metrics.json, metrics.md, grid.png "
                                                          "(one sub-folder per run when several are given).")],
    checkpoint: Annotated[list[str] | None, typer.Option(
        help="Model checkpoint, shard folder or `train` run folder; repeat it (optionally as LABEL=PATH) to "
             "compare several. Default: the shipped one.")] = None,
    data: Annotated[str | None, typer.Option(
        help="Dataset: a SPEC §7 folder (e.g. from `avat3r synth`), ava256:PATH, nersemble:PATH or video:DIR "
             "(self-reenactment of monocular clips). Default: held-out synthetic subjects generated from seeds "
             "(--subjects, --first-seed).")] = None,
    split: Annotated[str, typer.Option(help="Dataset split to evaluate: train|val|test|all.")] = "test",
    views: Annotated[int, typer.Option(help="Input views per subject (k-farthest viewpoints).")] = 4,
    target_timesteps: Annotated[int, typer.Option(help="Target expressions (timesteps) per dataset subject.")] = 1,
    targets: Annotated[int, typer.Option(help="Target cameras scored per target timestep (dataset mode); "
                                              "target frames per clip for video:DIR.")] = 8,
    subjects: Annotated[int | None, typer.Option(
        help="Synthetic subjects to generate (default 8); with --data, at most this many (default all).")] = None,
    first_seed: Annotated[int, typer.Option(help="Seed of the first synthetic test subject.")] = 100000,
    prior: Annotated[str, typer.Option(help="Positional prior for the inputs: builtin|gt (gt: synthetic only, "
                                            "ground-truth depth).")] = "builtin",
    features: Annotated[str, typer.Option(help="Semantic features for checkpoints that use them: none|sapiens.")]
    = "none",
    sapiens: Annotated[Path | None, typer.Option(help="Sapiens TorchScript file (with --features sapiens).")] = None,
    lpips: Annotated[bool, typer.Option(help="Report LPIPS (AlexNet) when its weights are installed.")] = True,
    akd: Annotated[bool, typer.Option(help="Report AKD (MediaPipe landmarks) when the eval extra is installed.")]
    = True,
    csim: Annotated[bool, typer.Option(help="Report CSIM (dlib identity) when the eval extra is installed.")] = True,
    refine: Annotated[int, typer.Option(
        min=0, help="Score avatars tuned to their own inputs for this many steps, as `reconstruct --refine` makes "
                    "them (0: off).")] = 0,
    refine_lr: Annotated[float | None, typer.Option(
        min=0.0, help="Adam step size of --refine; default: the measured one (stages.refine.DEFAULT_LR).")] = None,
    ablation_table: Annotated[bool, typer.Option(
        "--ablation-table", help="Write the paper's ablation table (ablation.md) from the checkpoints given; "
                                 "rows from LABEL=PATH or the runs' recorded settings.")] = False,
    device: DeviceOpt = "auto",
    quiet: QuietOpt = False,
    seed: SeedOpt = 0,
    force: ForceOpt = False,
) -> None:
    """Score checkpoints on held-out subjects: 4 inputs at other expressions → target views at the target
    expression, beside the nearest-input-view and prior-points baselines (PSNR, SSIM, LPIPS, AKD, CSIM)."""
    from stages.evaluate import (
        Scorer,
        ablation_labels,
        comparison_table,
        evaluate_dataset,
        evaluate_synthetic,
        image_grid,
        jsonable,
        markdown_table,
        parse_run,
    )
    from stages.evaluate import ablation_table as make_ablation
    from stages.io import atomic_dir, write_image

    if data == "synth":
        data = None  # the old spelling of the seed mode
    if prior not in ("builtin", "gt"):
        raise BadInput(f"--prior {prior}: expected builtin or gt")
    if subjects is not None and subjects < (1 if data is None else 0):
        raise BadInput("--subjects must be at least 1")
    if min(views, targets, target_timesteps) < 1:
        raise BadInput("--views, --targets and --target-timesteps must be at least 1")
    if data is None and (views != 4 or features != "none"):
        raise BadInput("the synthetic seed mode uses 4 inputs and no features; pass --data for other settings")
    output_folder(out, "--out")
    runs = [parse_run(c) for c in checkpoint] if checkpoint else []
    if ablation_table and not runs:
        raise BadInput("--ablation-table needs the runs' checkpoints (--checkpoint LABEL=PATH, repeated)")
    labels = ablation_labels(runs) if ablation_table else [r.label or r.checkpoint.as_posix() for r in runs]
    if len(set(labels)) != len(labels):
        raise BadInput("two --checkpoint values share a label; name them as LABEL=PATH")
    if data is not None:  # a wrong path or split fails here, before any model or metric network loads
        from stages.datasets import open_dataset

        open_dataset(data, 64).subjects(split)
    dev, rep = start_run(device, quiet, seed)
    scorer = Scorer(dev, lpips, akd, csim)
    for name, why in scorer.unavailable.items():
        if name not in ("akd3d", "csim_norm"):
            rep.log(f"{name} unavailable: {why}")
    reports: dict[str, dict] = {}
    try:
        for label, run in zip(labels or ["shipped"], runs or [None], strict=True):
            ckpt = run.checkpoint if run else None
            if data is None:
                n = subjects or 8
                reports[label] = evaluate_synthetic(ckpt, list(range(first_seed, first_seed + n)), dev,
                                                    track=rep.track, prior=prior, scorer=scorer, refine=refine,
                                                    refine_lr=refine_lr)
            else:
                reports[label] = evaluate_dataset(ckpt, data, dev, split, views, target_timesteps, targets,
                                                  subjects or 0, prior=prior, features=features, sapiens=sapiens,
                                                  seed=seed, track=rep.track, scorer=scorer, refine=refine,
                                                  refine_lr=refine_lr)
    finally:
        scorer.close()
    single = len(reports) == 1 and not ablation_table
    with atomic_dir(out) as tmp:
        for label, report in reports.items():
            folder = tmp if single else tmp / _slug(label)
            folder.mkdir(exist_ok=True)
            (folder / "metrics.json").write_text(json.dumps(jsonable(report), indent=2) + "\n")
            (folder / "metrics.md").write_text(markdown_table(report))
            write_image(folder / "grid.png", image_grid(report["_images"]))
        if not single:
            summary = {label: jsonable({k: v for k, v in r.items() if k != "subjects"}) for label, r in reports.items()}
            (tmp / "metrics.json").write_text(json.dumps({"runs": summary}, indent=2) + "\n")
            (tmp / "comparison.md").write_text(comparison_table(reports))
        if ablation_table:
            (tmp / "ablation.md").write_text(make_ablation(reports))
    if not quiet:
        rep.log(make_ablation(reports) if ablation_table else
                markdown_table(next(iter(reports.values()))) if single else comparison_table(reports))
    first = next(iter(reports.values()))
    m = first["mean"]
    n_subj = len(first["subjects"])
    rep.summary(f"wrote {out}: {len(reports)} run(s); PSNR avat3r {m['avat3r']['psnr']:.2f} / nearest "
                f"{m['nearest view']['psnr']:.2f} / points {m['prior points']['psnr']:.2f} dB over {n_subj} subjects")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_cmd)
