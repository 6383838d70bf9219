"""Model loading, batched and cached generation, sentence encoders, tiny test models."""

from taskloop.models.cache import LRUCache, cache_key, normalise
from taskloop.models.distill import knowledge_distillation
from taskloop.models.errors import DeviceError, ModelError, ModelKindError, ModelNotFoundError
from taskloop.models.generate import Generated, GenerationSettings, count_tokens, generate
from taskloop.models.loader import LoadedModel, ModelSpec, load_model
from taskloop.models.prune import model_pruning
from taskloop.models.quantize import quantize_model

__all__ = [
    "DeviceError",
    "Generated",
    "GenerationSettings",
    "LRUCache",
    "LoadedModel",
    "ModelError",
    "ModelKindError",
    "ModelNotFoundError",
    "ModelSpec",
    "cache_key",
    "count_tokens",
    "generate",
    "knowledge_distillation",
    "load_model",
    "model_pruning",
    "normalise",
    "quantize_model",
]
