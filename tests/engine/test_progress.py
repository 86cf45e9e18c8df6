"""A run says what it is doing before the network too: the cloud screening, the registration and
the scene's units read the whole scene (minutes on a Sentinel-2 tile), and were silent."""

from __future__ import annotations

from misr_engine.pipeline import SuperResolveRequest, super_resolve_files
from misr_engine.progress import counted, staged

from .reporting import Recorder


def test_counted_says_each_whole_percent_of_the_items_used_once():
    said: list[str] = []
    used = []
    for item in counted(range(7), staged(said.append, "step")):
        used.append(item)
        assert len(said) == item  # said after the item is used, not when it is handed out
    assert used == list(range(7))
    assert said == ["step: 14%", "step: 28%", "step: 42%", "step: 57%", "step: 71%", "step: 85%", "step: 100%"]
    assert list(counted(range(3), None)) == [0, 1, 2]
    hundreds: list[str] = []
    list(counted(range(1000), hundreds.append))
    assert len(hundreds) == 100 and hundreds[-1] == "100%"  # at most once per whole percent


def test_a_run_without_masks_reports_its_screening_and_preparation_before_the_first_tile(tmp_path, sample_paths):
    frames = sample_paths[0][2:5]  # three frames: enough to screen
    recorder = Recorder()
    super_resolve_files(SuperResolveRequest(frames=frames, output=str(tmp_path / "sr.tif")), recorder)
    messages = [message for _, message in recorder.progress]
    first_tile = next(index for index, message in enumerate(messages) if message.startswith("tile "))
    before = messages[:first_tile]
    expected = ["screening clouds and shadows, pass 1/2: registering the frames",
                "screening clouds and shadows, pass 1/2: 100%",
                "screening clouds and shadows, pass 2/2: registering the frames",
                "screening clouds and shadows, pass 2/2: 100%",
                "registering the frames",
                "fitting each frame's radiometry: 100%",
                "measuring the scene's level and noise: 100%"]
    assert [before.index(message) for message in expected] == sorted(before.index(message) for message in expected)
    assert all(fraction == 0.0 for fraction, _ in recorder.progress[:first_tile])  # the network's work not begun
    fractions = [fraction for fraction, _ in recorder.progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
