"""Super-resolution models: one file per architecture, one explicit registry."""

from vsr.models.registry import LoadedModel, ModelSpec, get_spec, list_specs, load_model

__all__ = ["LoadedModel", "ModelSpec", "get_spec", "list_specs", "load_model"]
