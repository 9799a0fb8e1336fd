"""The sending thread runs real-time only while it keeps a paced schedule, and says so."""
import os

from harness.loadgen.priority import SENDING_FIFO_PRIORITY, fifo_allowed, realtime_sending


def test_paced_sending_runs_real_time_where_allowed_and_ordinary_after() -> None:
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    with realtime_sending(True) as policy:
        inside = os.sched_getscheduler(0)
        prio = os.sched_getparam(0).sched_priority
    if fifo_allowed():
        assert policy == f"SCHED_FIFO {SENDING_FIFO_PRIORITY}"
        assert (inside, prio) == (os.SCHED_FIFO, SENDING_FIFO_PRIORITY)
    else:       # not root, or no real-time budget: recorded as ordinary, never claimed
        assert policy is None and inside == os.SCHED_OTHER
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    assert os.getpriority(os.PRIO_PROCESS, 0) == nice


def test_unpaced_sending_never_runs_real_time() -> None:
    with realtime_sending(False) as policy:
        assert policy is None
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
