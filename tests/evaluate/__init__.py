"""Tests of evaluation metrics."""
