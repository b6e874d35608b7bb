"""``medlens serve``: the REST service and web viewer over the library (adapters only, no model logic).

``create_app(ServiceConfig(models={"name": run}))`` gives the FastAPI app; ``medlens serve`` runs it with uvicorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medlens.serve.app import create_app
    from medlens.serve.service import ServiceConfig

__all__ = ["ServiceConfig", "create_app"]


def __getattr__(name: str) -> Any:  # fastapi and SQLAlchemy load when the service is used, not on import
    if name == "create_app":
        from medlens.serve.app import create_app

        return create_app
    if name == "ServiceConfig":
        from medlens.serve.service import ServiceConfig

        return ServiceConfig
    raise AttributeError(name)
