"""Evaluation on held-out subjects (the paper's protocol): 4 inputs at their own expressions, then target views
at other expressions, scored with PSNR / SSIM / LPIPS / AKD / CSIM beside two no-learning baselines.

- `protocol`: which views are inputs and which are scored (datasets and the synthetic seed mode);
- `scoring`: the metrics, with optional extras reported as unavailable instead of failing;
- `run`: avatar + baselines per subject, whole evaluations (`evaluate_dataset`, `evaluate_synthetic`);
- `report`: the markdown table and the image grid; `ablation`: several checkpoints and the ablation table.
"""

from stages.evaluate.ablation import ABLATION_ROWS, ablation_labels, ablation_table, comparison_table, parse_run
from stages.evaluate.report import PAPER_MAIN, image_grid, jsonable, markdown_table
from stages.evaluate.run import METHODS, evaluate_dataset, evaluate_synthetic
from stages.evaluate.scoring import COLUMNS, Scorer

__all__ = ["ABLATION_ROWS", "COLUMNS", "METHODS", "PAPER_MAIN", "Scorer", "ablation_labels", "ablation_table",
           "comparison_table", "evaluate_dataset", "evaluate_synthetic", "image_grid", "jsonable", "markdown_table",
           "parse_run"]
