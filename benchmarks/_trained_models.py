"""Shared start of the benchmarks that evaluate trained checkpoints (robustness, uncertainty):
``--model NAME=CHECKPOINT`` options -> loaded models and the real data splits at their image size."""

from __future__ import annotations

import argparse
import os
from typing import Any

import torch

from neurocxr.data.datasets import load_dataset
from neurocxr.models.loaded import load


def load_models_and_data(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[dict[str, str], dict[str, Any], Any]:
    """(checkpoint path per name, loaded model per name, data splits); exits when no real data is found
    unless ``--allow-synthetic``. Sets torch's threads from OMP_NUM_THREADS (default 1)."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if not args.model:
        parser.error("give --model NAME=CHECKPOINT at least once")
    checkpoints = dict(m.split("=", 1) for m in args.model)
    models = {name: load(path) for name, path in checkpoints.items()}
    image_size = next(iter(models.values())).config.image_size
    splits = load_dataset(args.data, image_size=image_size, synthetic_ok=args.allow_synthetic)
    if splits.synthetic and not args.allow_synthetic:
        raise SystemExit("no real data: set NEUROCXR_DATA or --data (or --allow-synthetic)")
    print(f"data: {splits.test.source}", flush=True)
    return checkpoints, models, splits
