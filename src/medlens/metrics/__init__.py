"""Metric machinery every task shares: the case bootstrap (:mod:`~medlens.metrics.bootstrap`) and calibration
(:mod:`~medlens.metrics.calibration`). Each task's own metrics live in its package (``tasks/<task>/metrics.py``).
Nothing is imported here, so importing the package stays cheap."""
