"""Denoising autoencoders: trained on clean images of a dataset with simulated noise, applied in each image's own
geometry, and measured against the noisy input and classical filters in the same run (``medlens denoise``).

Modules: :mod:`~medlens.denoising.noise` (the noise model), :mod:`~medlens.denoising.network` (MONAI networks and
padding), :mod:`~medlens.denoising.intensities` (images of a dataset scaled to [0, 1]),
:mod:`~medlens.denoising.denoiser` (the saved model), :mod:`~medlens.denoising.training`,
:mod:`~medlens.denoising.application`, :mod:`~medlens.denoising.classical` and :mod:`~medlens.denoising.evaluation`.
"""
