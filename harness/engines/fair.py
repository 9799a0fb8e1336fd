"""What every JVM engine gets by default, the same for each, so a comparison is about the engines and not about
how they were given resources: task slots, heap cap, collector and warm-up.

Engines read these as their settings' defaults (Flink's parallelism and heap, Spark's local[N] and driver
memory); an explicit setting still wins and is shown as changed. docs/engines.md lists them.
"""

from __future__ import annotations

import os

# Task slots: 2 here (two cores), never more than the machine has. Flink: parallelism; Spark: local[N].
SLOTS = max(1, min(2, os.cpu_count() or 1))
# Heap cap of the JVM that runs the work (Flink's mini-cluster JVM, Spark's driver in local mode).
HEAP = "1g"
# One collector for every JVM engine: the serial collector, since two cores leave no room for a parallel
# collector's threads beside the broker, PostgreSQL and the generator.
COLLECTOR = "-XX:+UseSerialGC"
# Micro-batches (Spark) or a bounded job (Flink) over the same warm-up records (harness.engines.warmup) before
# the real query starts, inside start-to-running: a cold JVM's first batches take 2-14 s.
WARMUP_BATCHES = 10


def heap_flags(heap: str) -> str:
    """-Xms/-Xmx for a heap cap written like Spark's memory settings (512m, 1g)."""
    return f"-Xms256m -Xmx{heap}"
