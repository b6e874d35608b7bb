"""Helpers shared by the benchmark scripts (run as ``python benchmarks/NAME.py``: this folder is on the path)."""

from __future__ import annotations

from pathlib import Path


def split_sizes(dataset_dir: Path) -> dict[str, int]:
    """Cases per split of a medlens dataset."""
    from medlens.data.dataset import load_dataset

    cases = load_dataset(dataset_dir).cases
    return {s: sum(c.split == s for c in cases) for s in ("train", "val", "test")}
