"""Model registry and factory: ``create_model(name, ...)``, ``list_models()``."""

from medlens.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
