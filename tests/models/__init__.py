"""Tests of model loading, generation, caching, encoders and tiny models."""
