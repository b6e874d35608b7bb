"""The few types every layer shares: images with geometry, errors, settings, atomic outputs."""
