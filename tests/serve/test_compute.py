"""The compute pool batches requests that wait for the same model, gives each its own answer (the bundle's), and
hands a failure back to the one request that caused it."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from medlens.core.errors import InputError


def test_queued_requests_are_batched_and_a_bad_one_fails_alone(pneumonia_run: Path, medmnist_subset) -> None:  # type: ignore[no-untyped-def]
    from medlens import load_bundle
    from medlens.core.image import Image, default_affine
    from medlens.serve.catalog import ServedModel
    from medlens.serve.compute import ComputePool

    bundle = load_bundle(pneumonia_run / "run")
    model = ServedModel("xray", pneumonia_run / "run", bundle, "v")
    pictures = medmnist_subset("pneumoniamnist", 1, 1, 24)["test_images"]
    images = [
        Image(p[None].astype(np.float32), default_affine(2), meta={"source": f"#{i}"}) for i, p in enumerate(pictures)
    ]
    volume = Image(np.zeros((1, 8, 8, 8), np.float32), default_affine(3), meta={"source": "volume"})
    batches: list[int] = []
    gate = threading.Event()
    first = True

    def observe(name: str, size: int, seconds: float) -> None:
        nonlocal first
        batches.append(size)
        if first:  # hold the only worker after its first batch, so the others queue up behind it
            first = False
            gate.wait(10)

    pool = ComputePool(workers=1, on_batch=observe)
    outcomes: dict[int, object] = {}
    done = threading.Event()

    def keep(i: int):  # type: ignore[no-untyped-def]
        def settle(outcome: object) -> None:
            outcomes[i] = outcome
            if len(outcomes) == len(images) + 1:
                done.set()

        return settle

    try:
        pool.submit(model, images[0], keep(0))
        for i, image in enumerate([*images[1:12], volume, *images[12:]], start=1):
            pool.submit(model, image, keep(i))
        gate.set()
        assert done.wait(60)
    finally:
        pool.close()
    assert max(batches) > 1 and sum(batches) == len(images) + 1  # queued requests went together
    failed = outcomes.pop(12)
    assert isinstance(failed, InputError) and "3D image given to a 2D model" in str(failed)
    direct = {p.source: p.probabilities for p in bundle.predict_many(images)}
    answers = {o.source: o.probabilities for o in outcomes.values()}  # type: ignore[attr-defined]
    for source, probabilities in answers.items():  # each got its own answer, the bundle's
        assert probabilities == pytest.approx(direct[source], abs=1e-5)
    assert len(answers) == len(images)
