"""Reports every task shares: one HTML template (:mod:`~medlens.reports.html`), figures and the palette
(:mod:`~medlens.reports.figures`), pictures of images with labels or boxes (:mod:`~medlens.reports.pictures`)."""
