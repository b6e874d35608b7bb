"""The classical denoisers the autoencoder is measured against, from scikit-image (and BM3D from the ``bm3d``
package): each takes a channel-first image scaled to [0, 1] and returns the same shape.

Parameters follow the libraries' usual practice: non-local means with ``h = 0.8 * sigma`` where ``sigma`` is
``estimate_sigma`` of the noisy image itself (scikit-image's example), total variation (Chambolle) with its weight
set to that same estimated sigma, and BM3D with the estimated sigma. No method is told the true noise level.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Method = Callable[[np.ndarray], np.ndarray]

#: what each method's parameters are, as recorded in denoise.json
SETTINGS = {
    "nl_means": "skimage.restoration.denoise_nl_means, h=0.8*sigma, sigma=estimate_sigma(noisy), patch_size=5, "
    "patch_distance=6 (2D) or 3 (3D), fast_mode",
    "tv": "skimage.restoration.denoise_tv_chambolle, weight=estimate_sigma(noisy)",
    "bm3d": "bm3d.bm3d(noisy, sigma_psd=estimate_sigma(noisy)), per channel, 2D only",
}


def _sigma(channel: np.ndarray) -> float:
    from skimage.restoration import estimate_sigma

    return max(float(estimate_sigma(channel)), 1e-3)


def _per_channel(method: Callable[[np.ndarray, float], np.ndarray], noisy: np.ndarray) -> np.ndarray:
    """``method(channel, estimated_sigma)`` on each channel of a channel-first image (scikit-image's own
    ``channel_axis`` expects the channels last and, for non-local means, colour, not independent images)."""
    return np.stack([np.asarray(method(c, _sigma(c)), dtype=np.float32) for c in noisy])


def nl_means(noisy: np.ndarray) -> np.ndarray:
    """Non-local means (scikit-image) with its noise level estimated from the image."""
    from skimage.restoration import denoise_nl_means

    distance = 6 if noisy.ndim == 3 else 3

    def run(channel: np.ndarray, sigma: float) -> np.ndarray:
        return denoise_nl_means(
            channel, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=distance, fast_mode=True
        )

    return _per_channel(run, noisy)


def total_variation(noisy: np.ndarray) -> np.ndarray:
    """Total-variation denoising (Chambolle, scikit-image) weighted by the estimated noise level."""
    from skimage.restoration import denoise_tv_chambolle

    return _per_channel(lambda channel, sigma: denoise_tv_chambolle(channel, weight=sigma), noisy)


def bm3d_available() -> str | None:
    """The installed ``bm3d`` package's version, or None."""
    try:
        from importlib.metadata import version

        import bm3d  # noqa: F401
    except ImportError:
        return None
    return version("bm3d")


def bm3d(noisy: np.ndarray) -> np.ndarray:
    """BM3D (the ``bm3d`` package) per channel of a 2D image, with the estimated noise level."""
    import bm3d as bm3d_package

    return _per_channel(lambda channel, sigma: bm3d_package.bm3d(channel, sigma_psd=sigma), noisy)


METHODS: dict[str, Method] = {"nl_means": nl_means, "tv": total_variation}
