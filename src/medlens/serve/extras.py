"""``?explain=true`` and ``?report=true``: the one place the service asks the library for explanations and reports.

Explanations (heatmaps) and plain-language reports are written by ``Prediction.save`` when its
:class:`~medlens.core.prediction.SaveOptions` asks for them. This medlens has neither yet (they are being added
beside the service); until ``SaveOptions`` has the field, a request for one is a 400 that says so. When the field
exists, the request sets it, and the files ``save`` writes (for example ``explanation`` or ``report`` roles) come
back as links like the mask and the overlay. A feature a particular bundle cannot give is the library's error at
``save`` time, which the service answers as a 422 naming the problem.
"""

from __future__ import annotations

import dataclasses

from medlens.core.prediction import SaveOptions
from medlens.serve.errors import ServiceError

EXTRAS = {"explain": "explanations", "report": "reports"}


def save_options(*, explain: bool = False, report: bool = False, pictures: bool = True) -> SaveOptions:
    """The options ``Prediction.save`` gets for a request.

    Raises:
        ServiceError: 400 when an extra is asked for that this version of medlens does not write.
    """
    known = {f.name for f in dataclasses.fields(SaveOptions)}
    wanted = {"explain": explain, "report": report}
    for name, asked in wanted.items():
        if asked and name not in known:
            raise ServiceError(400, f"{name}: {EXTRAS[name]} are not available in this version of medlens")
    return SaveOptions(pictures=pictures, **{k: v for k, v in wanted.items() if k in known})  # type: ignore[arg-type]
