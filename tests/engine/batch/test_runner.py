"""Running scenes on a cluster: outcomes as they end, bounded retries for what is not bad input
(an in-process cluster of 2 workers, stand-in tasks)."""

from __future__ import annotations

import time

import pytest

from misr_engine.batch.manifest import Scene
from misr_engine.batch.outcome import DONE, FAILED, SceneOutcome
from misr_engine.batch.runner import _unless_stopped, run_scenes
from misr_engine.errors import MisrError
from misr_engine.pipeline import SuperResolveRequest

ATTEMPTS: dict[str, int] = {}


def slow(scene_id: str, request: SuperResolveRequest, threads: int | None) -> SceneOutcome:
    """Takes 2 s, except 'fast': it ends as soon as another scene has started (within 10 s), so
    that one scene is running on the other worker when it ends, however loaded the machine."""
    ATTEMPTS[scene_id] = ATTEMPTS.get(scene_id, 0) + 1
    if scene_id == "fast":
        deadline = time.monotonic() + 10
        while len(ATTEMPTS) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    else:
        time.sleep(2)
    return SceneOutcome(scene_id, DONE)


def flaky(scene_id: str, request: SuperResolveRequest, threads: int | None) -> SceneOutcome:
    """Fails (out of memory) on the first attempt of 'flaky' and every attempt of 'doomed'."""
    ATTEMPTS[scene_id] = ATTEMPTS.get(scene_id, 0) + 1
    if scene_id == "doomed" or (scene_id == "flaky" and ATTEMPTS[scene_id] == 1):
        raise MemoryError("out of memory")
    if scene_id == "bad":  # what run_scene returns for bad input: no retry
        return SceneOutcome(scene_id, FAILED, message=str(MisrError("x.tif: file not found")))
    return SceneOutcome(scene_id, DONE, seconds=0.1)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster, distributed.Client(cluster) as client:
        yield client


def test_failures_are_retried_a_bounded_number_of_times_and_never_stop_the_others(client):
    ATTEMPTS.clear()
    scenes = [Scene(name, f"m.csv:{i}", i, SuperResolveRequest(frames=["f.tif"], output=f"{name}.tif"))
              for i, name in enumerate(["ok", "flaky", "doomed", "bad"], start=2)]
    seen, retries = [], []
    outcomes = run_scenes(client, scenes, retries=2, task=flaky, on_outcome=seen.append,
                          on_retry=lambda scene, attempt, error: retries.append((scene.id, attempt, error)))
    by_id = {outcome.scene: outcome for outcome in outcomes}
    assert seen == outcomes and set(by_id) == {"ok", "flaky", "doomed", "bad"}
    assert (by_id["ok"].status, by_id["ok"].attempts) == (DONE, 1)
    assert (by_id["flaky"].status, by_id["flaky"].attempts) == (DONE, 2)
    assert (by_id["doomed"].status, by_id["doomed"].attempts) == (FAILED, 3)
    assert by_id["doomed"].message == "MemoryError: out of memory" and by_id["doomed"].output == "doomed.tif"
    assert (by_id["bad"].status, by_id["bad"].attempts, by_id["bad"].message) == (FAILED, 1, "x.tif: file not found")
    assert sorted(retries) == [("doomed", 1, "MemoryError: out of memory"), ("doomed", 2, "MemoryError: out of memory"),
                               ("flaky", 1, "MemoryError: out of memory")]
    ATTEMPTS.clear()
    outcomes = run_scenes(client, scenes[2:3], retries=0, task=flaky)
    assert (outcomes[0].status, outcomes[0].attempts) == (FAILED, 1)


def test_an_interruption_cancels_the_queued_scenes_and_lets_the_running_ones_finish(client):
    """Interrupted once the first scene ends: the scene running on the other worker finishes and
    is reported (its output is committed, not killed half written); the queued ones never start."""
    ATTEMPTS.clear()
    scenes = [Scene(name, f"m.csv:{i}", i, SuperResolveRequest(frames=["f.tif"], output=f"{name}.tif"))
              for i, name in enumerate(["fast", "slow1", "slow2", "slow3", "slow4"], start=2)]
    seen, stops = [], []

    def interrupt(outcome: SceneOutcome) -> None:
        seen.append(outcome.scene)
        if len(seen) == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_scenes(client, scenes, task=slow, on_outcome=interrupt, grace=30,
                   on_stop=lambda running, grace: stops.append((running, grace)))
    # which queued scene a worker picks next is Dask's choice: at most one per worker was running
    assert seen[0] == "fast" and 2 <= len(seen) <= 3
    # every running one reported; the count may also hold a scene caught inside the stop check
    # (it then returns without running), so it is a bound, not an equality
    assert stops and stops[0][1] == 30 and stops[0][0] >= len(seen) - 1
    time.sleep(2.5)
    assert set(ATTEMPTS) == set(seen)  # the queued ones never started


def test_a_scene_a_worker_picks_up_after_the_stop_never_starts(client):
    """The race the interruption closes: a worker may take a queued scene between the stop and
    the cancellation reaching it; the scene then returns at once without running."""
    from distributed import Event

    ATTEMPTS.clear()
    request = SuperResolveRequest(frames=["f.tif"], output="late.tif")
    assert client.submit(_unless_stopped, "misr-stop-test", slow, "late", request, None, pure=False).result().status == DONE
    Event("misr-stop-test", client=client).set()
    assert client.submit(_unless_stopped, "misr-stop-test", slow, "later", request, None, pure=False).result() is None
    assert set(ATTEMPTS) == {"late"}


def test_a_scene_on_a_dask_worker_is_held_to_that_worker_s_memory_limit(client):
    """Not to half of the machine: Dask restarts a worker past 95% of its limit (the scene was
    retried, then failed as a lost worker, instead of a one-line refusal up front)."""
    from misr_engine.inference.budget import WORKER_SHARE, WORKER_SOURCE, memory_budget
    limits = set(client.run(lambda dask_worker: dask_worker.memory_manager.memory_limit).values())
    budget, source = client.submit(memory_budget, None, pure=False).result()
    assert len(limits) == 1 and budget == int(WORKER_SHARE * limits.pop())
    assert source.startswith(WORKER_SOURCE) and WORKER_SOURCE == "80% of the Dask worker's memory limit"
    assert "Dask" not in memory_budget(None)[1]  # outside a worker: the machine's
