"""Tests of task records and the task-data loader."""
