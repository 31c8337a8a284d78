"""The split rule by subject, shared by `avat3r synth` (which records it in dataset.json) and every loader whose
dataset has no split of its own. It lives here, not in stages.synth, so that reading datasets never imports the
synthetic-head generator."""

from __future__ import annotations

import numpy as np


def split_subjects(names: list[str], seed: int) -> dict[str, list[str]]:
    """Split by subject: ~80% train, ~10% val, ~10% test (val and test get one each once there are 3)."""
    order = [names[i] for i in np.random.default_rng(int(seed) + 1).permutation(len(names))]
    n = len(order)
    n_test = max(1, round(0.1 * n)) if n >= 3 else 0
    n_val = max(1, round(0.1 * n)) if n >= 3 else 0
    return {"train": sorted(order[n_test + n_val:]), "val": sorted(order[n_test:n_test + n_val]),
            "test": sorted(order[:n_test])}


def split_names(names: list[str], seed: int = 0) -> dict[str, list[str]]:
    """Deterministic split by subject: ~80% train, ~10% val, ~10% test (the rule `avat3r synth` uses)."""
    return split_subjects(sorted(names), seed)
