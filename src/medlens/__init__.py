"""medlens: AI on medical images, from raw data to a measured, explained, deployable model.

The public API is small: import the workflows you need from :mod:`medlens.workflows`, readers and
writers from :mod:`medlens.io`, and de-identification from :mod:`medlens.deid`.
"""

from medlens.core.errors import MedlensError

__version__ = "0.1.0"
__all__ = ["MedlensError", "__version__"]
