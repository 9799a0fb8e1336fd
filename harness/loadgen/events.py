"""Event i as a pure function of (seed, scenario, i), computed a block at a time with counter-based hashing.

Only `sent_at` (stamped at hand-off) and the time base differ between two runs of one scenario.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.loadgen.schedule import Schedule
from harness.records import HEARTBEAT_KEY  # noqa: F401  (the generator sends it; one definition)
from harness.scenario import FAR_FUTURE_MS, Scenario

KIND_NORMAL = 0
KIND_OUT_OF_ORDER = 1
KIND_LATE = 2
# Malformed kinds: every engine and checker applies the rule in README "What counts as malformed".
MALFORMED_KINDS = (
    "invalid_json",          # not parseable as JSON at all
    "missing_field",         # valid JSON object without `value`
    "null_event_time",       # event_time is null
    "key_not_string",        # key is a JSON number
    "value_not_integer",     # value is a numeric string, a float or a boolean
    "event_time_not_integer",  # event_time is a numeric string or a float
)
KIND_MALFORMED_FIRST = 3
# What real topics carry beyond those, each at its own share (load.bad_input); the comments say how the rule
# judges each. They replace whatever kind an event would otherwise have been, and are on time.
BAD_INPUT_KINDS = (
    "tombstone",             # a null value: malformed
    "empty_value",           # zero bytes: malformed
    "invalid_utf8",          # a record whose pad holds bytes that are not UTF-8: malformed (decoded leniently
    #                          it would be a perfect record)
    "deep_nesting",          # `value` is an object 100 levels deep: malformed
    "deep_nesting_extra",    # an extra field holds an object 100 levels deep: well-formed
    "extra_fields",          # unknown fields beside the four: well-formed
    "near_size_limit",       # 1 KiB under the topic's max.message.bytes: well-formed
    "oversized",             # 1 KiB over it: the broker refuses it, so no engine sees it
    "far_future",            # a perfect record whose event time is a day ahead: malformed by max_clock_skew
)
KIND_BAD_FIRST = KIND_MALFORMED_FIRST + len(MALFORMED_KINDS)
KIND_NAMES = ("normal", "out_of_order", "late") + MALFORMED_KINDS + BAD_INPUT_KINDS
KIND = {name: code for code, name in enumerate(KIND_NAMES)}
# Every kind the rule calls malformed, and per kind code whether it is (ground truth's well-formed events are
# the others, less the records the broker refused).
ALL_MALFORMED_KINDS = MALFORMED_KINDS + ("tombstone", "empty_value", "invalid_utf8", "deep_nesting", "far_future")
IS_MALFORMED = np.array([name in ALL_MALFORMED_KINDS for name in KIND_NAMES])
# Well-formed kinds sent on time (late events are the generator's `late` only).
ON_TIME_KINDS = tuple(KIND[n] for n in ("normal", "out_of_order", "deep_nesting_extra", "extra_fields",
                                        "near_size_limit", "oversized"))
NESTING_DEPTH = 100
VALUE_MAX = 1000

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniform(seed: int, stream: int, index: np.ndarray) -> np.ndarray:
    """A uniform [0, 1) draw per index for one named stream: the same (seed, stream, i) gives the same number."""
    with np.errstate(over="ignore"):
        base = _splitmix64(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64) ^ np.uint64((stream * 0x632BE59BD9B4E019) & 0xFFFFFFFFFFFFFFFF))
        h = _splitmix64(index.astype(np.uint64) * np.uint64(0xD1B54A32D192ED03) ^ base)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


# One stream per attribute, so changing how one attribute is drawn never shifts another.
S_KIND, S_MALFORMED, S_DELAY, S_KEY, S_VALUE, S_BAD = 1, 2, 3, 4, 5, 6


@dataclass
class EventBlock:
    """Events start..start+len-1, columnar. Offsets are milliseconds since the time base."""

    event_id: np.ndarray     # int64
    due_ms: np.ndarray       # float64: intended send offset
    key_idx: np.ndarray      # int64
    value: np.ndarray        # int64, 1..VALUE_MAX
    event_ms: np.ndarray     # int64: event-time offset (may precede 0 for delayed events near the start)
    kind: np.ndarray         # int8: a code into KIND_NAMES (IS_MALFORMED says which ones are malformed)

    def __len__(self) -> int:
        return len(self.event_id)


def key_name(idx: int) -> str:
    return f"k{idx:06d}"


class EventModel:
    def __init__(self, scenario: Scenario, schedule: Schedule | None = None) -> None:
        self.s = scenario
        self.schedule = schedule or Schedule.for_scenario(scenario)
        load = scenario.load
        if load.key_distribution == "zipf":
            ranks = np.arange(1, load.keys + 1, dtype=np.float64)
            w = ranks ** (-load.zipf_s)
            self._key_cdf: np.ndarray | None = np.cumsum(w) / w.sum()
        else:
            self._key_cdf = None
        bad = load.bad_input
        self._bad_codes = np.array([KIND[n] for n in bad.fractions()], dtype=np.int8)
        self._bad_cum = np.cumsum(list(bad.fractions().values()))
        # the oversized records sit evenly spread over the load, never first or last
        n = self.count
        self.oversized_at = np.array(sorted({(j + 1) * n // (bad.oversized + 1) for j in range(bad.oversized)} - {0}),
                                     dtype=np.int64) if bad.oversized and n > 1 else np.zeros(0, dtype=np.int64)
        self.far_future_at = self._far_future_at()

    @property
    def count(self) -> int:
        return self.schedule.count

    def _keys(self, idx: np.ndarray) -> np.ndarray:
        load = self.s.load
        u_key = uniform(self.s.seed, S_KEY, idx)
        if self._key_cdf is None:
            return np.minimum((u_key * load.keys).astype(np.int64), load.keys - 1)
        return np.minimum(np.searchsorted(self._key_cdf, u_key, side="right"), load.keys - 1).astype(np.int64)

    def _far_future_at(self) -> np.ndarray:
        """The events planted a day ahead: per entry, the event due at its time (`one`), or the first event due
        from then on in each partition (`all`); a partition no key maps to gets none."""
        parts_n = self.s.topic.partitions
        out: set[int] = set()
        for ff in self.s.load.bad_input.far_future:
            i0 = min(int(np.ceil(self.schedule.cumulative[ff.at] - 1e-9)), self.count - 1)
            if i0 < 0:
                continue
            idx = np.arange(i0, min(self.count, i0 + 100_000), dtype=np.int64)
            parts = self._keys(idx) % parts_n
            wanted = [int(parts[0])] if ff.partitions == "one" else range(parts_n)
            for p in wanted:
                hit = np.flatnonzero(parts == p)
                if len(hit):
                    out.add(int(idx[hit[0]]))
        return np.array(sorted(out), dtype=np.int64)

    def block(self, start: int, stop: int) -> EventBlock:
        s, load = self.s, self.s.load
        idx = np.arange(start, stop, dtype=np.int64)
        due = self.schedule.due_ms(start, stop)
        key_idx = self._keys(idx)
        value = 1 + np.minimum((uniform(s.seed, S_VALUE, idx) * VALUE_MAX).astype(np.int64), VALUE_MAX - 1)
        u_kind = uniform(s.seed, S_KIND, idx)
        mf, lf, of = load.malformed_fraction, load.late.fraction, load.out_of_order.fraction
        kind = np.full(len(idx), KIND_NORMAL, dtype=np.int8)
        kind[u_kind < mf + lf + of] = KIND_OUT_OF_ORDER
        kind[u_kind < mf + lf] = KIND_LATE
        malformed = u_kind < mf
        sub = np.minimum((uniform(s.seed, S_MALFORMED, idx) * len(MALFORMED_KINDS)).astype(np.int64),
                         len(MALFORMED_KINDS) - 1)
        kind[malformed] = (KIND_MALFORMED_FIRST + sub[malformed]).astype(np.int8)
        if len(self._bad_cum) and self._bad_cum[-1] > 0:
            u_bad = uniform(s.seed, S_BAD, idx)
            which = np.searchsorted(self._bad_cum, u_bad, side="right")
            hit = which < len(self._bad_codes)
            kind[hit] = self._bad_codes[which[hit]]
        over = self.oversized_at[(self.oversized_at >= start) & (self.oversized_at < stop)]
        kind[over - start] = KIND["oversized"]
        ahead = self.far_future_at[(self.far_future_at >= start) & (self.far_future_at < stop)] - start
        kind[ahead] = KIND["far_future"]
        event_ms = np.floor(due).astype(np.int64)
        ooo = kind == KIND_OUT_OF_ORDER
        if ooo.any():
            d = 1 + np.minimum((uniform(s.seed, S_DELAY, idx) * load.out_of_order.max_delay).astype(np.int64),
                               load.out_of_order.max_delay - 1)
            event_ms[ooo] -= d[ooo]
        event_ms[kind == KIND_LATE] -= load.late.delay
        event_ms[ahead] += FAR_FUTURE_MS
        return EventBlock(idx, due, key_idx, value, event_ms, kind)
