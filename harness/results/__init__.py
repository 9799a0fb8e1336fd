"""Result documents: the typed model of result.json, reading (with upgrades of older versions) and tidy frames.

In a notebook:

    from harness import results
    doc = results.load("results/<run_id>")          # ResultDocument
    f = results.frames("results/<run_id>")          # Frames: runs, windows, timeseries, loads

docs/results.md describes every field and frame.
"""

from harness.results.document import SCHEMA_VERSION, EngineResult, LoadResult, ResultDocument
from harness.results.frames import Frames, frames
from harness.results.reading import load, parse

__all__ = ["SCHEMA_VERSION", "EngineResult", "Frames", "LoadResult", "ResultDocument", "frames", "load", "parse"]
