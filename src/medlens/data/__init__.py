"""Datasets: ``dataset.yaml`` plus a manifest with one row per case, importers, splits and loading."""
