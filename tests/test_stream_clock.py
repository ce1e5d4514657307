"""StreamClock: continuous device time across clock resets and jumps, dropped frames kept."""

from __future__ import annotations

from sensors.realsense.clock import StreamClock


def test_steady_clock_is_unchanged():
    clock = StreamClock(period_ms=33.3)
    assert [clock(t) for t in (100.0, 133.3, 166.6)] == [100.0, 133.3, 166.6]
    assert clock.jumps == 0


def test_reset_to_zero_continues_one_period_later():
    clock = StreamClock(period_ms=10.0)
    out = [clock(t) for t in (500.0, 510.0, 2.0, 12.0)]
    assert out == [500.0, 510.0, 520.0, 530.0]
    assert clock.jumps == 1


def test_dropped_frames_near_the_other_stream_keep_their_gap():
    clock = StreamClock(period_ms=10.0)
    clock(0.0)
    # 1.5 s of dropped frames; the other stream is already there: not a jump.
    assert clock(1500.0, other_last_ms=1490.0) == 1500.0
    assert clock.jumps == 0


def test_forward_jump_far_beyond_the_other_stream_is_resynchronised():
    clock = StreamClock(period_ms=10.0)
    clock(0.0)
    assert clock(9_000_000.0, other_last_ms=10.0) == 10.0
    assert clock(9_000_010.0, other_last_ms=20.0) == 20.0
    assert clock.jumps == 1


def test_duplicate_timestamp_is_not_a_jump():
    clock = StreamClock(period_ms=10.0)
    assert [clock(t) for t in (0.0, 10.0, 10.0)] == [0.0, 10.0, 10.0]
    assert clock.jumps == 0
