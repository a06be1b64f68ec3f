"""Backbones: a registry of specs (registry.py), builders (resnet, vit, efficientnet, timm_any) and
strict checkpoint loading (checkpoints.py). Importing this package registers every backbone."""
from . import efficientnet, resnet, timm_any, vit  # noqa: F401  (registration)
from .checkpoints import CheckpointFormat, LoadReport, load_checkpoint
from .registry import BackboneSpec, build, create, get_spec, list_backbones, register

__all__ = ["BackboneSpec", "CheckpointFormat", "LoadReport", "build", "create", "get_spec", "list_backbones",
           "load_checkpoint", "register"]
