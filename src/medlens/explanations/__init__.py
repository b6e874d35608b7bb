"""Explanations with their measured faithfulness: why a model gave its answer for one input, and how far to trust
that picture.

- :mod:`.methods`: the registry of methods by name (the CAM family from pytorch-grad-cam in :mod:`.cam`; occlusion
  and integrated gradients from captum in :mod:`.attribution`);
- :mod:`.explainer`: the :class:`Explainer` each task hands over (``Task.explainer``): the network input, the target,
  the score, the way back to the input's geometry;
- :mod:`.explanation`: :func:`explain_image` -> :class:`Explanation` (a map as an ``Image`` in the input's geometry,
  saved as PNG overlay, NIfTI or npz, and a DICOM Secondary Capture for DICOM input);
- :mod:`.faithfulness`: deletion and insertion AUC against a random order, the model-randomisation check, intervals
  over images, and the rule that chooses a bundle's default method;
- :mod:`.selection`: that choice after training, recorded in the bundle.

(The package is ``explanations``, not ``explain``: ``medlens.explain`` is the workflow function of the public API,
and a subpackage of that name would replace it as an attribute of ``medlens`` once imported.)
"""

from medlens.explanations.explainer import Explainer
from medlens.explanations.explanation import Explanation, default_method, explain_image
from medlens.explanations.methods import get_method, list_methods

__all__ = ["Explainer", "Explanation", "default_method", "explain_image", "get_method", "list_methods"]
