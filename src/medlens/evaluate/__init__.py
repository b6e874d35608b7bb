"""Evaluation: metrics with bootstrap confidence intervals, calibration, plots and reports.

Import from the modules: :mod:`medlens.evaluate.classification` (``classification_metrics``,
``choose_threshold``, ``classification_curves``) and :mod:`medlens.evaluate.report`
(``write_classification_report``). Nothing is imported here, so importing the package stays cheap.
"""
