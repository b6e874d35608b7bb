"""Metric machinery every task shares: the case bootstrap (:mod:`~medlens.metrics.bootstrap`), calibration
(:mod:`~medlens.metrics.calibration`) and the worst cases of a model (:mod:`~medlens.metrics.cases`). Each task's
own metrics live in its package (``tasks/<task>/metrics.py``). Nothing is imported here, so importing the package
stays cheap."""
