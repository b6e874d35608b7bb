"""Class-conditional generative models of a dataset's images, and how much their images are worth.

- :func:`medlens.generative.training.train_generator`: a small class-conditional DDPM (MONAI's
  ``DiffusionModelUNet``, sampled with DDIM) or a conditional GAN (a DCGAN generator against MONAI's
  ``PatchDiscriminator``) trained on a dataset's ``train`` split within a time budget (``medlens synth train``).
- :func:`medlens.generative.sampling.sample_dataset`: an ordinary medlens dataset of generated images, marked
  synthetic (``medlens synth sample``), that ``medlens train`` takes unchanged.
- :func:`medlens.generative.evaluation.evaluate_synthesis`: train-on-synthetic/test-on-real, the gain from adding
  synthetic images to few real labels, Fréchet distance, precision/recall and memorisation (``medlens synth
  evaluate``).

2D images only for now.
"""
