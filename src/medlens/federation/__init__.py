"""Federated training with Flower: the model goes to the sites, only weights come back.

- :mod:`~medlens.federation.sites`: which cases each site holds (a manifest column, or a split made by the tool:
  IID, or skewed by label with a Dirichlet draw), and what a site may say about itself (sizes, label mix).
- :mod:`~medlens.federation.site`: a site's Flower client; each round it trains the task's own module locally with
  :func:`medlens.training.fitting.fit_member` (FedProx's proximal term added to the local loss, DP-SGD with
  ``train.privacy``), and sends back the weights only.
- :mod:`~medlens.federation.server`: Flower's FedAvg or FedProx strategy, run in simulation (Flower's ``Server``
  with in-process clients) or as a real gRPC server that sites join; the bundle is written from the last
  global weights.
"""
