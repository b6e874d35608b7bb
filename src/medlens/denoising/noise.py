"""Simulated noise for denoising: Gaussian with a sigma relative to the intensity range, Poisson at a photon count.

Images are scaled to [0, 1] first (:mod:`medlens.denoising.intensities`), so the two models read:

- ``gaussian:S``: additive white noise with standard deviation ``S`` (a fraction of the intensity range);
- ``poisson:N``: photon counting as in low-dose CT and X-ray: a pixel of intensity ``x`` receives a Poisson number
  of photons with mean ``x * N`` (``N`` photons at the brightest value), and is read back as ``counts / N``, so
  its variance is ``x / N``: the noise grows with the signal, and a lower ``N`` is a lower dose;
- both, comma-separated (``gaussian:0.05,poisson:50``): Poisson counting, then the Gaussian read-out noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medlens.core.errors import ConfigError


@dataclass(frozen=True)
class NoiseSpec:
    """The simulated noise: ``gaussian`` sigma (fraction of the range) and ``poisson`` photon scale; 0 for none."""

    gaussian: float = 0.0
    poisson: float = 0.0

    def __str__(self) -> str:
        parts = [f"gaussian:{self.gaussian:g}"] if self.gaussian else []
        parts += [f"poisson:{self.poisson:g}"] if self.poisson else []
        return ",".join(parts)


def parse_noise(text: str) -> NoiseSpec:
    """Read ``gaussian:0.05``, ``poisson:50`` or both, comma-separated.

    Raises:
        ConfigError: an unknown kind, a value that is not a positive number, or no noise at all.

    Example:
        >>> parse_noise("gaussian:0.05,poisson:50")
        NoiseSpec(gaussian=0.05, poisson=50.0)
    """
    values: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        kind, _, value = part.partition(":")
        kind = kind.strip().lower()
        if kind not in ("gaussian", "poisson"):
            raise ConfigError("--noise", f"unknown noise {kind!r} in {text!r} (gaussian:SIGMA, poisson:PHOTONS)")
        if kind in values:
            raise ConfigError("--noise", f"{kind} given twice in {text!r}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError("--noise", f"{part!r}: {value!r} is not a number") from None
        if not number > 0 or number == float("inf"):
            raise ConfigError("--noise", f"{part!r}: the value must be a positive number")
        values[kind] = number
    if not values:
        raise ConfigError("--noise", f"{text!r} names no noise (e.g. gaussian:0.05,poisson:50)")
    return NoiseSpec(**values)


def add_noise(clean: torch.Tensor, spec: NoiseSpec, generator: torch.Generator | None = None) -> torch.Tensor:
    """A noisy copy of ``clean`` (values in [0, 1], any shape): Poisson counting, then Gaussian read-out noise.

    Args:
        clean: intensities scaled to [0, 1].
        spec: the noise.
        generator: a seeded generator for reproducible noise (evaluation); the global one otherwise.
    """
    noisy = clean.float()
    if spec.poisson:
        rate = noisy.clamp(min=0.0) * spec.poisson
        noisy = torch.poisson(rate, generator=generator) / spec.poisson
    if spec.gaussian:
        noise = torch.randn(noisy.shape, generator=generator, dtype=noisy.dtype, device=noisy.device)
        noisy = noisy + spec.gaussian * noise
    return noisy
