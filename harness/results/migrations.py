"""Upgrading result.json files written by an older harness, one schema version at a time.

Each step takes the JSON of version n and returns version n + 1; `upgrade` chains them. A version with no step
(older than the oldest kept here, or newer than this harness) is refused by the loader with the versions it reads.
"""

from __future__ import annotations

from typing import Any, Callable

from harness.results.document import SCHEMA_VERSION, Versions

Doc = dict[str, Any]


def _v1_to_v2(doc: Doc) -> Doc:
    """v1 kept each engine's versions beside the harness's (versions.<engine>) and repeated the definition of
    two intervals in every engine entry; v2 has versions.engines and leaves definitions to docs/results.md."""
    versions = doc.get("versions")
    if isinstance(versions, dict):
        own = set(Versions.model_fields)
        engines = {k: v for k, v in versions.items() if k not in own and isinstance(v, dict)}
        doc["versions"] = {**{k: v for k, v in versions.items() if k not in engines}, "engines": engines}
    for entry in doc.get("engines") or []:
        if isinstance(entry, dict):
            for section in ("throughput", "cpu_during_load"):
                if isinstance(entry.get(section), dict):
                    entry[section].pop("interval", None)
    doc["schema_version"] = 2
    return doc


def _v2_to_v3(doc: Doc) -> Doc:
    """v3 added the engine status "settled", windows.bad_windows and keeping_up; a v2 file has none of them,
    and is a valid v3 document once its version says so."""
    doc["schema_version"] = 3
    return doc


def _v3_to_v4(doc: Doc) -> Doc:
    """v4 measures event-to-result latency from the intended send time and keeps the hand-off figure beside it;
    a v3 file's figure is from hand-off, so it moves there and the headline figure says where it starts.
    v4 also added the engine's generator check and timing, which a v3 file lacks."""
    for entry in doc.get("engines") or []:
        windows = entry.get("windows") if isinstance(entry, dict) else None
        if isinstance(windows, dict) and "event_to_result_ms" in windows:
            windows["event_to_result_handoff_ms"] = windows["event_to_result_ms"]
            windows["event_to_result_from"] = "handoff"
    doc["schema_version"] = 4
    return doc


def _v4_to_v5(doc: Doc) -> Doc:
    """v5 added only optional fields: an engine run's tuned_settings and jvms, the machine's CPU governor, cgroup
    limits and behaviour environment, the services' settings and the commit's modified/untracked counts (and
    the per-engine-run cgroup CPU and idle wait, which some v4 files already carry). A v4 file is a valid v5
    document once its version says so; the bump lets an older harness say a new file is newer, not invalid."""
    doc["schema_version"] = 5
    return doc


def _v5_to_v6(doc: Doc) -> Doc:
    """v6 added only optional fields: an engine run's faults, the generator's
    refused_too_large and, under malformed, by_kind and not_malformed_counted. A v5 file is a valid v6 document
    once its version says so."""
    doc["schema_version"] = 6
    return doc


def _v6_to_v7(doc: Doc) -> Doc:
    """v7 added the capacity mode and its `capacity` list; a v6 file is a valid v7 document once its version
    says so."""
    doc["schema_version"] = 7
    return doc


STEPS: dict[int, Callable[[Doc], Doc]] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5, 5: _v5_to_v6,
                                          6: _v6_to_v7}
READABLE = sorted({*STEPS, SCHEMA_VERSION})


def upgrade(doc: Doc) -> Doc:
    """The document at SCHEMA_VERSION; the caller has checked that its version is in READABLE."""
    while doc.get("schema_version") != SCHEMA_VERSION:
        doc = STEPS[int(doc["schema_version"])](doc)
    return doc
