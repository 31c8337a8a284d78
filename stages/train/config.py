"""Training options in one dataclass; saved beside every checkpoint so a run can be reproduced and resumed."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class TrainConfig:
    out: str = "runs/avat3r"  # run folder: checkpoints, metrics.jsonl, validation grids
    # "synth" (on the fly), a SPEC section 7 folder, ava256:PATH / nersemble:PATH / synth:PATH / video:PATH, or a
    # list of them with optional "@WEIGHT" suffixes: a weighted mix (stages.train.video_data.MixedSource)
    data: str | list = "synth"
    preset: str = "base"  # model preset (stages.model.config.PRESETS)
    model_overrides: dict = field(default_factory=dict)
    steps: int = 20000
    batch_size: int = 4  # avatars per step (per GPU)
    n_inputs: int = 4
    n_supervision: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: int = 500
    min_lr_ratio: float = 0.05  # cosine decay down to lr * min_lr_ratio
    grad_clip: float = 1.0
    l1_weight: float = 0.8
    ssim_weight: float = 0.2
    alpha_weight: float = 0.2  # rendered alpha vs the target mask (keeps the silhouette tight)
    expr_weight: float = 0.5  # L1 on the pixels that change with the expression (synthetic pool)
    lpips_weight: float = 0.01
    lpips_after: int = -1  # step from which LPIPS joins the loss; -1 = never
    prior: str = "builtin"  # "builtin" (the same prior as at test time) or "gt" (ground-truth depth + noise)
    consistent_inputs: bool = False  # ablation: inputs at the target expression instead of other timesteps
    n_cameras: int = 32  # synthetic studio size ("fresh" source)
    source: str = "pool"  # "pool": a bank of pre-rendered subjects reused for many steps; "fresh": new each time
    pool_slots: int = 32  # subjects held at once
    pool_timesteps: int = 8  # expressions rendered per subject
    pool_cameras: int = 16  # studio views rendered per subject and expression
    pool_lifetime: int = 400  # steps a subject stays in the pool
    pool_configs: int = 6  # input configurations (views + timesteps, with their prior) per subject
    workers: int = 2  # DataLoader processes that decode dataset frames ahead of the GPU (0: in the main process)
    time_limit: float = 0.0  # seconds of wall time after which to save and stop (0: none); resume continues
    init: str = ""  # start from these weights (a checkpoint file or folder) instead of random ones
    log_every: int = 50
    val_every: int = 1000
    ckpt_every: int = 1000
    seed: int = 0
    device: str = "auto"
    bf16: bool = True  # autocast on CUDA

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> TrainConfig:
        return TrainConfig(**json.loads(text))
