"""Load from many producers: two shards (`harness load --shard 0/2` and `1/2`, one time base, one topic, run at
the same time) send exactly the single generator's events for the same seed, each partition's records from the
one shard that owns it in the schedule's order, and their ground truths add up to the single generator's."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import psutil
import pytest
import yaml

from conftest import HARNESS, ROOT, Svc, assert_complete_and_exact, classify, consume_topic, run_cli, scenario_dict
from harness import groundtruth
from harness.loadgen.events import EventModel
from harness.loadgen.generator import Shard
from harness.loadgen.priority import SENDING_FIFO_PRIORITY, fifo_allowed
from harness.run.planning import next_time_base
from harness.run.shard import shard_skew
from harness.scenario import parse_scenario
from harness.stack import processes

pytestmark = pytest.mark.stack
SCHEDULER = f"SCHED_FIFO {SENDING_FIFO_PRIORITY}" if fifo_allowed() else None   # every shard's sending thread

KEY = ["key", "window_start", "window_end"]
VALUES = ["cnt", "sum", "min", "max"]


def test_shard_parsing_and_ownership() -> None:
    assert Shard.parse("1/2").partitions(3) == [1] and Shard.parse("0/2").partitions(3) == [0, 2]
    for bad in ("2/2", "x", "1/0", "-1/2"):
        with pytest.raises(ValueError):
            Shard.parse(bad)
    with pytest.raises(ValueError, match="at most 3 shards"):
        Shard.parse("3/4").partitions(3)


DATA = scenario_dict(name="shards", duration="4s", topic={"partitions": 3},
                     load={"rate": 500, "keys": 30, "payload_bytes": 120, "heartbeat_interval": "100ms",
                           "out_of_order": {"fraction": 0.1, "max_delay": "200ms"}, "malformed_fraction": 0.02})


def check_union(svc: Svc, tb: int, topic: str, figures: list[dict], dirs: list[Path]) -> None:
    """The topic holds exactly the single generator's events for the seed and time base, each partition's in
    schedule order, and the shards' ground truths add up to the single generator's."""
    scen = parse_scenario(DATA, "t")
    assert sorted(p for f in figures for p in f["partitions"]) == [0, 1, 2]
    model = EventModel(scen)
    n = model.count
    full = groundtruth.events(scen, model, tb, np.zeros(n, dtype=np.int64), n)
    assert sum(f["events_sent"] for f in figures) == n == 2000
    for f in figures:
        mine = full[full["kafka_partition"].isin(f["partitions"])]
        assert f["events_sent"] == len(mine) and f["events_acked"] == len(mine) and f["delivery_errors"] == 0

    records = consume_topic(svc.bootstrap, topic, 3)
    by_part: dict[int, list[bytes | None]] = defaultdict(list)
    heartbeats: dict[int, int] = defaultdict(int)
    for p, _off, _key, value in sorted(records, key=lambda r: (r[0], r[1])):
        if classify(value) == "heartbeat":
            heartbeats[p] += 1
        else:
            by_part[p].append(value)
    assert all(heartbeats[p] > 0 for p in range(3))
    for p in range(3):
        want = full[full["kafka_partition"] == p].sort_values("event_id")
        got = by_part[p]
        assert len(got) == len(want), p
        for value, ev in zip(got, want.itertuples(index=False)):
            kind = classify(value)
            if ev.kind in (0, 1):      # normal and out-of-order: well-formed, field for field
                obj = orjson.loads(value)   # type: ignore[arg-type]
                assert (kind, obj["event_id"], obj["key"], obj["value"], obj["event_time"]) == \
                    ("well_formed", ev.event_id, ev.key, ev.value, ev.event_time), (p, ev)
            else:
                assert kind not in ("well_formed", "heartbeat"), (p, ev, kind)

    single = groundtruth.compute(scen, model, tb, np.full(n, tb, dtype=np.int64), n)
    for answer in ("on_time", "complete"):
        union = pd.concat([pd.read_csv(d / f"expected_{answer}.csv") for d in dirs])
        a = union[KEY + VALUES].sort_values(KEY).reset_index(drop=True)
        b = single.windows[answer][KEY + VALUES].sort_values(KEY).reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b, check_dtype=False)
    skew = shard_skew(figures, scen)
    assert skew["skew_ms"] is not None and skew["margin_ms"] == 500 - 200


def test_two_shards_are_the_single_generators_load(svc: Svc, tmp_path: Path) -> None:
    scen = parse_scenario(DATA, "t")
    path = tmp_path / "shards.yaml"
    path.write_text(yaml.safe_dump(DATA))
    tb = next_time_base(scen, time.time_ns() // 1_000_000 + 6_000)   # both processes start and warm up first
    topic = f"harness.test-shards.{tb}"
    env = {**os.environ, "HARNESS_BOOTSTRAP_SERVERS": svc.bootstrap}
    procs = [subprocess.Popen([*HARNESS, "load", str(path), "--shard", f"{i}/2", "--topic", topic, "--time-base",
                               str(tb), "--out", str(tmp_path / f"s{i}")], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
             for i in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    figures = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert [f["partitions"] for f in figures] == [[0, 2], [1]] and all(f["nice"] is not None for f in figures)
    assert all(f["scheduler"] == SCHEDULER for f in figures), figures
    check_union(svc, tb, topic, figures, [tmp_path / "s0", tmp_path / "s1"])


def test_run_with_locust_workers_is_the_single_generators_load(svc: Svc, tmp_path: Path) -> None:
    """`harness run --load locust --locust-workers 2`: the topic holds exactly the single generator's load, the
    engine's answer is exact against the merged ground truth, and each worker's figures are in the result."""
    path = tmp_path / "shards.yaml"
    path.write_text(yaml.safe_dump({**DATA, "engines": {"baseline": {}}}))
    r = run_cli("run", str(path), "--load", "locust", "--locust-workers", "2", "--results-dir", str(tmp_path / "r"),
                timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    [run_dir] = list((tmp_path / "r").iterdir())
    doc = json.loads((run_dir / "result.json").read_text())
    [e] = doc["engines"]
    assert_complete_and_exact(e)
    [load] = doc["loads"]
    sh = load["shards"]
    assert sh["via"] == "locust" and sh["workers"] == 2 and [s["shard"] for s in sh["shards"]] == ["0/2", "1/2"]
    assert sh["skew_ms"] is not None and sh["margin_ms"] == 300
    g = load["generator"]
    assert g["events_sent"] == g["events_acked"] == sum(s["events_sent"] for s in sh["shards"]) == 2000
    assert g["send_delay_ms"]["count"] == 2000 and not g["interrupted"] and g["scheduler"] == SCHEDULER
    locust = run_dir / "raw" / load["load_id"] / "locust"
    check_union(svc, load["time_base_ms"], load["topic"], sh["shards"], [locust / f"shard-{i}" for i in range(2)])
    # Locust collected one entry per shard: its events as the response length
    stats = pd.read_csv(locust / "locust_stats.csv")
    shard_rows = stats[stats["Type"] == "shard"]
    assert sorted(shard_rows["Name"]) == ["0/2", "1/2"] and shard_rows["Request Count"].sum() == 2
    assert (shard_rows["Failure Count"] == 0).all()
    html = (run_dir / "report.html").read_text()     # the Loads table: who sent the load, and the skew
    assert "Locust, 2 workers (skew" in html
    assert not [p for p in processes.registered() if "locust" in p["what"] and p["alive"]]
    left = [q.pid for q in psutil.process_iter(["cmdline"]) if "locust" in " ".join(q.info["cmdline"] or [])
            and "locustfile" in " ".join(q.info["cmdline"] or [])]
    assert not left, left


def test_locust_workers_beyond_the_partitions_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "shards.yaml"
    path.write_text(yaml.safe_dump({**DATA, "engines": {"baseline": {}}}))
    r = run_cli("run", str(path), "--load", "locust", "--locust-workers", "4", "--results-dir", str(tmp_path / "r"))
    assert r.returncode == 2 and "allowed: 1..3" in r.stderr, r.stderr
    r = run_cli("run", str(path), "--load", "many", "--results-dir", str(tmp_path / "r"))
    assert r.returncode == 2 and "allowed: generator" in r.stderr, r.stderr
    assert not (tmp_path / "r").exists()
