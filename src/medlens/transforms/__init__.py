"""Preprocessing (the same at training and prediction) and augmentation pipelines."""
