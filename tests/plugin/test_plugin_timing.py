"""The time a run has taken and has left, as the dialog's status line and Processing's progress
text show it (qgis_misr.core.timing): from the engine's progress events alone."""

from __future__ import annotations

import re

import pytest

from qgis_misr.core.timing import RunClock, duration_text


@pytest.mark.parametrize("seconds, text", [(0.4, "0 s"), (42, "42 s"), (60, "1 min"), (190, "3 min 10 s"),
                                           (25 * 60 + 20, "25 min"), (25 * 60 + 40, "26 min"), (2 * 3600 + 5 * 60 + 9, "2 h 05 min")])
def test_durations_read_as_people_say_them(seconds, text):
    assert duration_text(seconds) == text


class FakeTime:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_time_left_comes_from_the_pace_of_the_network_s_work_not_from_the_preparation():
    clock = FakeTime()
    timer = RunClock(clock)
    clock.now += 300  # five minutes screening and registering: the fraction does not move
    assert timer.describe(0.0, "registering the frames") == "registering the frames (5 min elapsed)"
    clock.now += 4  # no event: the dialog's timer reads the line again
    assert timer.text() == "registering the frames (5 min 4 s elapsed)"
    clock.now -= 4
    clock.now += 10
    assert timer.describe(0.01, "tile 1/100") == "tile 1/100 (5 min 10 s elapsed)"  # one point: no pace yet
    clock.now += 20  # two tiles in 20 s: 10 s a tile, 97 tiles to go
    assert timer.describe(0.03, "tile 3/100") == "tile 3/100 (5 min 30 s elapsed, about 16 min left)"
    clock.now += 120  # two minutes without an event: the time left counts down
    assert timer.text() == "tile 3/100 (7 min 30 s elapsed, about 14 min left)"
    clock.now -= 120
    clock.now += 970
    assert timer.describe(1.0, "tile 100/100") == "tile 100/100 (22 min elapsed)"


def test_a_new_stage_measures_its_own_pace():
    """Test-time fine-tuning has half of the bar and its own pace; the tiles then start afresh."""
    clock = FakeTime()
    timer = RunClock(clock)
    timer.describe(0.025, "test-time fine-tuning 1/20, loss 0.0312")
    clock.now += 95  # 19 steps of 5 s
    assert "about 1 s left" not in timer.describe(0.5, "test-time fine-tuning 20/20, loss 0.0281")
    assert timer.update(0.5, "test-time fine-tuning 20/20, loss 0.0281") == pytest.approx(95 / 0.475 * 0.5)
    clock.now += 2
    assert timer.update(0.5 + 0.5 / 16, "tile 1/16") is None  # a new stage: no pace yet
    clock.now += 4
    assert timer.update(0.5 + 1.0 / 16, "tile 2/16") == pytest.approx(4 * 14)


def test_bands_share_one_stage_and_a_band_s_preparation_counts_in_the_pace():
    clock = FakeTime()
    timer = RunClock(clock)
    timer.describe(0.25, "band 1/2: tile 2/4")
    clock.now += 10
    timer.describe(0.5, "band 1/2: tile 4/4")
    clock.now += 30  # the second band's units: the fraction holds, the clock runs, the pace slows
    assert timer.update(0.5, "band 2/2: measuring the scene's level and noise: 100%") == pytest.approx(80)
    clock.now += 10
    assert timer.update(0.625, "band 2/2: tile 1/4") == pytest.approx(50 / 0.375 * 0.375)


def test_a_batch_s_scenes_give_its_time_left():
    clock = FakeTime()
    timer = RunClock(clock)
    timer.describe(0.1, "1/10 scenes (scene a: ok)")
    clock.now += 120
    text = timer.describe(0.3, "3/10 scenes (scene c: ok)")
    assert re.search(r"about 7 min left\)$", text), text
