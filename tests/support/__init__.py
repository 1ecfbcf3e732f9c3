"""Helpers for tests and benchmarks: synthesized checkpoints and a fake Hub."""
