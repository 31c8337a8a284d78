"""Training options in one dataclass; saved beside every checkpoint so a run can be reproduced and resumed. Each
field's `help` is also its `avat3r train` option's help: the command's options are generated from this class, so
the command line and the config cannot disagree about a default."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from stages.errors import BadInput
from stages.model.config import PRESETS, ModelConfig


def opt(default: Any, help: str) -> Any:  # noqa: A002 - the name Typer/argparse users expect
    """A field that `avat3r train` offers as --name (underscores become dashes) with this help."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    out: str = "runs/avat3r"  # run folder: checkpoints, metrics.jsonl, validation grids (the command's --out)
    # "synth" (on the fly), a SPEC section 7 folder, ava256:PATH / nersemble:PATH / synth:PATH / video:PATH, or a
    # list of them with optional "@WEIGHT" suffixes: a weighted mix (stages.train.video_data.MixedSource); the
    # command's repeatable --data
    data: str | list = "synth"
    preset: str = opt("base", "Model size: tiny|base|paper (stages.model.config.PRESETS).")
    model_overrides: dict = field(default_factory=dict)  # the command's --set key=value
    steps: int = opt(20000, "Total optimisation steps.")
    batch_size: int = opt(4, "Avatars per step (per GPU).")
    n_inputs: int = opt(4, "Input views per avatar.")
    n_supervision: int = opt(8, "Supervision views per avatar, at the target expression.")
    lr: float = opt(3e-4, "Peak learning rate (AdamW).")
    weight_decay: float = opt(0.01, "AdamW weight decay.")
    warmup: int = opt(500, "Linear warm-up steps.")
    min_lr_ratio: float = opt(0.05, "Cosine decay down to lr × this.")
    grad_clip: float = opt(1.0, "Gradient norm clip.")
    l1_weight: float = opt(0.8, "Weight of the L1 photometric loss.")
    ssim_weight: float = opt(0.2, "Weight of 1 − SSIM.")
    alpha_weight: float = opt(0.2, "Weight of rendered alpha vs the target mask (keeps the silhouette tight).")
    expr_weight: float = opt(0.5, "Extra L1 on expression-changing pixels (synthetic).")
    expr_contrast: float = opt(0.0, "Weight of the expression contrast (synthetic pool): half the supervision "
                                    "views are seen again at a second expression, and the change between the "
                                    "two renders is held to the ground truth's change (L1 over the changing "
                                    "pixels plus over the whole image, so nothing else may move; 0: off).")
    expr_contrast_norm: str = opt("l1", "How the contrast scores the change on the changing pixels: l1 (its "
                                        "minimiser is the median change, so a change whose place the model is "
                                        "unsure of shrinks towards none) or l2 (the squared error over the "
                                        "ground truth's squared change, summed over the batch, times the truth's "
                                        "mean absolute change: its minimiser is the mean change, and a model "
                                        "that ignores the code scores as with l1). The whole-image stillness "
                                        "part is L1 either way.")
    lpips_weight: float = opt(0.01, "Weight of LPIPS once --lpips-after is reached.")
    lpips_after: int = opt(-1, "Add LPIPS to the loss from this step (-1: never).")
    prior: str = opt("builtin", "Positional prior in training: builtin (as at test time) or gt (ground-truth "
                                "depth + noise; synthetic only).")
    input_view_targets: int = opt(0, "Supervision views taken at the input cameras: synthetic and studio data "
                                     "at the target expression, video the input frames themselves (0: none, as "
                                     "the paper; targets then never sit at an input camera).")
    narrow_inputs: float = opt(0.0, "Fraction of the synthetic pool's input sets taken as a phone video that "
                                    "hardly turns: 4 cameras within 3-15 degrees of one studio view, rendered at "
                                    "their own cameras (0: every set k-farthest over the studio, as the paper).")
    narrow_video_inputs: float = opt(0.0, "Fraction of video examples whose 4 inputs are the frames nearest one "
                                          "frame in head rotation (a clip that hardly turns, where stereo has no "
                                          "baseline) instead of spread by farthest-point sampling.")
    mirror_video: float = opt(0.0, "Fraction of video examples seen in a mirror: images flipped left to right, "
                                   "cameras mirrored across the face's midplane, Left/Right ARKit channels "
                                   "swapped (a mirrored face is close to a new person; the clips have few).")
    video_colour: float = opt(0.0, "Fraction of video examples given one colour response (exposure, white "
                                   "balance, gamma, as the wide recipe draws them) on inputs and targets alike.")
    depth_spread_weight: float = opt(0.0, "Weight of the depth spread (cm): the alpha-weighted standard deviation "
                                          "of the distances of the Gaussians each target pixel blends, on 2 "
                                          "supervision views per avatar; penalises the fog of faint Gaussians at "
                                          "disagreeing depths (0: off).")
    train_only: str = opt("", "Comma-separated parameter-name prefixes that train (e.g. up,fuse,head: the upsampler "
                          "and the Gaussian head); every other weight stays as --init gave it ('': all train).")
    fresh_lr: float = opt(1.0, "Learning-rate multiplier for the weights of options that start as a no-op "
                               "(input_codes' projection, decoder_self_layers' blocks), so that under --init a "
                               "new part catches up with a network already trained without it.")
    consistent_inputs: bool = opt(False, "Ablation: inputs at the target expression instead of other timesteps.")
    n_cameras: int = opt(32, "Synthetic studio size (--source fresh).")
    source: str = opt("pool", "Synthetic data: pool (a bank of pre-rendered subjects reused for many steps) or "
                              "fresh (new subjects every step).")
    pool_slots: int = opt(32, "Synthetic subjects held in the GPU pool.")
    pool_timesteps: int = opt(8, "Expressions rendered per pooled subject.")
    pool_cameras: int = opt(16, "Studio views rendered per pooled subject and expression.")
    pool_lifetime: int = opt(4000, "Steps a pooled subject is reused before a new one.")
    pool_configs: int = opt(6, "Input configurations (views + timesteps, with their prior) per pooled subject, "
                          "and fixed input sets per video clip (their prior computed once; 0: fresh inputs "
                          "and prior every example).")
    video_prior: str = opt("builtin", "Prior of video examples: builtin, or facemesh (the face-mesh backend, from "
                                      "the landmarks `python -m stages.datasets.face_landmarks CACHE` stores).")
    video_expr_regions: bool = opt(False, "Video examples: apply the expression-region L1 (--expr-weight) to "
                                          "the mouth and eyes found by their landmarks.")
    video_frame_only: bool = opt(False, "Video examples: no loss where a target crop leaves its video frame (its "
                                        "black padding, where the mask is 0 too), so the model is not taught to "
                                        "cut the body at frame edges no view shows (needs a cache tracked with "
                                        "frame-coverage maps).")
    recipe: str = opt("", "Training-data recipe for the synthetic pool (stages.train.recipe): '' = the original "
                          "pool, bit for bit; 'wide' = every switch (cameras, camera_noise, mask_noise, backgrounds, "
                          "photometric, lighting, identity); or a comma list, '-name' removing one.")
    recipe_share: float = opt(1.0, "Fraction of pooled subjects built with the recipe (the rest: the original pool).")
    tracked_codes: str = opt("", "Expression codes a face tracker gave real frames, for synthetic heads to wear "
                                 "(--tracked-codes-share): a video:DIR cache (the codes of its train split's "
                                 "clips) or a .npy (N, 52).")
    tracked_codes_share: float = opt(0.0, "Fraction of the synthetic pool's expressions drawn from --tracked-codes "
                                          "instead of the generator's own (1-4 actions a code, where a tracker "
                                          "sets about a dozen channels at once).")
    tracked_codes_mix: float = opt(0.0, "Fraction of the worn tracked codes that are a random blend of two "
                                        "(l*a + (1-l)*b, l uniform): dense codes no clip had, so that the network "
                                        "cannot learn the source clips' codes one by one.")
    workers: int = opt(2, "Processes decoding dataset frames ahead (0: none).")
    time_limit: float = opt(0.0, "Save and stop after this many seconds (0: none); resume continues.")
    init: str = ""  # start from these weights (a checkpoint file or folder) instead of random ones (--init)
    log_every: int = opt(50, "Steps between log lines.")
    val_every: int = opt(1000, "Steps between validation grids.")
    ckpt_every: int = opt(1000, "Steps between checkpoints.")
    seed: int = 0  # the command's shared --seed
    device: str = "auto"  # the command's shared --device
    bf16: bool = opt(True, "bf16 autocast on CUDA.")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> TrainConfig:
        return TrainConfig(**json.loads(text))


_KIND = {int: "a whole number", float: "a number", bool: "true or false", str: "a string",
         tuple: "a list of whole numbers such as [64,32]"}

# What a resumed run may change: how long it runs, how often it logs and saves, and where. Anything else (data,
# model, loss, schedule shape, seed) would silently make the resumed run a different experiment.
RESUME_MAY_CHANGE = frozenset({"out", "steps", "time_limit", "log_every", "val_every", "ckpt_every", "workers",
                               "device", "init"})


def model_config(name: str, overrides: dict) -> ModelConfig:
    """The network config for --preset NAME with --set overrides, or BadInput naming the fault (an unknown
    preset or key, a value of the wrong type, a combination the network cannot build)."""
    if name not in PRESETS:
        raise BadInput(f"--preset {name}: unknown model preset; choose from {', '.join(PRESETS)}")
    known = {f.name: f for f in fields(ModelConfig)}
    defaults = ModelConfig()
    for key, value in overrides.items():
        if key not in known:
            raise BadInput(f"--set {key}: not a model option; choose from {', '.join(known)}")
        want = type(getattr(defaults, key))
        if want is tuple:
            ok = isinstance(value, list) and all(type(v) is int for v in value)
        elif want is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = type(value) is want
        if not ok:
            raise BadInput(f"--set {key}={json.dumps(value)}: expected {_KIND[want]}")
    try:
        return ModelConfig(**{**PRESETS[name], **overrides})
    except ValueError as exc:
        shown = " ".join(f"{k}={json.dumps(v)}" for k, v in overrides.items())
        raise BadInput(f"--preset {name}{' --set ' + shown if shown else ''}: {exc}") from None


def check_resumable(cfg: TrainConfig, stored_json: str, path: Path) -> None:
    """Refuse to resume a run whose stored settings differ from this command's in anything but RESUME_MAY_CHANGE,
    naming the keys, instead of continuing with a silent mix of the two."""
    stored, now = json.loads(stored_json), asdict(cfg)
    differ = sorted(k for k in stored.keys() & now.keys() if k not in RESUME_MAY_CHANGE and stored[k] != now[k])
    if differ:
        diffs = ", ".join(f"{k} {json.dumps(stored[k])} (stored) vs {json.dumps(now[k])}" for k in differ)
        raise BadInput(f"cannot resume: this run was saved with other settings ({diffs}); repeat the stored ones "
                       "(train_config.json), or start a new --out", path)
