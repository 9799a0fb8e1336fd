"""Benchmark commands: figures printed and saved, never asserted on time."""
