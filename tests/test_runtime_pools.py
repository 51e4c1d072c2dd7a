"""Generator pool sizing and its request to the autoscaler, on the real local Ray cluster."""

from __future__ import annotations

import json

import pytest
import ray

from izray.config import GeneratorConfig
from izray.runtime.pools import GeneratorPool, auto_pool_size


@pytest.mark.parametrize(("gpus", "per_actor", "cap", "expected"), [
    (0, 1, None, 1),  # no GPU yet: one actor, which makes the autoscaler add a GPU node
    (8, 1, None, 8),
    (8, 2, None, 4),  # tensor parallel 2
    (7, 2, None, 3),
    (8, 1, 3, 3),
    (0, 0, None, 1),  # CPU engines
])
def test_auto_pool_size(gpus, per_actor, cap, expected):
    assert auto_pool_size(gpus, per_actor, cap) == expected


def _requested() -> list[dict] | None:
    """What the cluster holds as the standing resource request (autoscaler v1 channel)."""
    from ray._private.ray_constants import AUTOSCALER_RESOURCE_REQUEST_CHANNEL
    from ray.experimental.internal_kv import _internal_kv_get

    raw = _internal_kv_get(AUTOSCALER_RESOURCE_REQUEST_CHANNEL)
    return None if raw is None else json.loads(raw)


def test_auto_pool_with_max_actors_asks_the_autoscaler_and_withdraws(ray_local, monkeypatch):
    from ray.autoscaler.v2.utils import is_autoscaler_v2

    if is_autoscaler_v2():  # pragma: no cover - the request then goes over GCS RPC
        pytest.fail("this test reads the v1 request channel; the local cluster runs v2")
    cfg = GeneratorConfig(backend="sim", num_actors="auto", max_actors=3, num_gpus=1,
                          tensor_parallel_size=2, num_cpus=1)
    pool = GeneratorPool(cfg, seed=0)
    try:
        assert _requested() == [{"GPU": 2.0, "CPU": 1.0}] * 3
        # The local cluster has no GPU: one actor, waiting for the GPU node to come up.
        assert len(pool.slots) == 1
    finally:
        pool.shutdown()
    assert _requested() == []
    assert pool.requested == []


def test_fixed_or_uncapped_pools_ask_for_nothing(ray_local):
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=[])
    for cfg in (GeneratorConfig(backend="sim", num_actors=1),
                GeneratorConfig(backend="sim", num_actors="auto"),
                GeneratorConfig(backend="sim", num_actors="auto", max_actors=4, num_gpus=0)):
        pool = GeneratorPool(cfg, seed=0)
        try:
            assert pool.requested == []
            assert _requested() in (None, [])
        finally:
            pool.shutdown()


def test_an_evaluator_that_cannot_see_the_run_journal_fails_the_start(ray_local, tmp_path,
                                                                      simulator):
    """A node without the run's volume would journal paid calls where no resume reads them
    (a fresh directory there, or none at all): the start check says so in one line."""
    from izray.errors import RunStateError
    from izray.report import JOURNAL_MARK, RunDir
    from izray.runtime.actors import EvaluatorActor
    from izray.runtime.calls import get_unwrapped

    sim = simulator()
    kwargs = {"base_url": sim.base_url, "model": "sim-model"}
    settings = {"endpoint": sim.base_url}
    elsewhere = tmp_path / "not-the-run" / "journal"  # what another node would see
    actor = EvaluatorActor.options(num_cpus=0).remote(kwargs, 2, "NO_SUCH_KEY", None, None,
                                                      settings, str(elsewhere))
    with pytest.raises(RunStateError, match="does not see the run directory's journal"):
        get_unwrapped(actor.check.remote())
    ray.kill(actor)

    run = RunDir(tmp_path / "run")  # the driver's run directory marks its journal
    assert (run.journal_dir / JOURNAL_MARK).is_file()
    actor = EvaluatorActor.options(num_cpus=0).remote(kwargs, 2, "NO_SUCH_KEY", None, None,
                                                      settings, str(run.journal_dir))
    get_unwrapped(actor.check.remote())  # sees it: the endpoint check runs and passes
    ray.kill(actor)
    run.close()


def test_evaluator_routing_is_fixed_by_the_first_prompt_and_spreads():
    from izray.runtime.pools import EvaluatorPool

    pool = EvaluatorPool.__new__(EvaluatorPool)  # routing needs only the slots
    pool.slots = [object()] * 4
    batches = [[f"Instruction {i}\nInput: w{j}\nOutput:" for j in range(3)] for i in range(400)]
    routes = [pool.route(b[0]) for b in batches]
    assert routes == [pool.route(b[0]) for b in batches]  # a resumed driver routes the same
    counts = [routes.count(i) for i in range(4)]
    assert min(counts) > 60, counts  # about 100 each


def test_evaluators_of_the_run_with_other_settings_are_retired(ray_local):
    from izray.runtime.session import retire_evaluators

    @ray.remote(num_cpus=0)
    class Dummy:
        def ping(self) -> int:
            return 1

    names = ["izray-eval-run1-aaaa-0", "izray-eval-run1-aaaa-1", "izray-eval-run1-bbbb-0",
             "izray-eval-run2-cccc-0"]
    actors = [Dummy.options(name=n, namespace="izray", lifetime="detached").remote()
              for n in names]
    ray.get([a.ping.remote() for a in actors])
    try:
        assert retire_evaluators("izray-eval-run1-", keep="izray-eval-run1-bbbb") == 2
        left = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                if a.get("namespace") == "izray"}
        assert "izray-eval-run1-bbbb-0" in left and "izray-eval-run2-cccc-0" in left
        assert not left & {"izray-eval-run1-aaaa-0", "izray-eval-run1-aaaa-1"}
    finally:
        for a in actors:
            ray.kill(a)


@pytest.mark.parametrize("placement", ["any", "driver"])
def test_evaluator_placement_pins_the_actors_to_the_drivers_node(ray_local, placement):
    from izray.config import EvaluatorConfig
    from izray.runtime.pools import EvaluatorPool

    cfg = EvaluatorConfig(base_url="http://127.0.0.1:9/v1", model="m", num_actors=2,
                          placement=placement)
    pool = EvaluatorPool(cfg, {"base_url": cfg.base_url, "model": "m"})
    try:
        ray.get([s.actor.__ray_ready__.remote() for s in pool.slots], timeout=120)  # placed
        here = ray.get_runtime_context().get_node_id()
        # "driver" is a hard affinity to this node (a lost node is no place to go to).
        strategy = pool.opts.get("scheduling_strategy")
        if placement == "driver":
            assert strategy.node_id == here and strategy.soft is False
        else:
            assert strategy is None
    finally:
        pool.shutdown()


# A driver of its own on the `ray start --head` cluster with 2 logical GPUs (this process
# may be connected to the GPU-less local cluster): sizes, placement groups, actor death.
GPU_SCHEDULING = r"""
import json, sys, time
import ray
from ray.util.placement_group import placement_group_table
from izray.config import GeneratorConfig
from izray.generation import GenerationRequest
from izray.runtime.pools import GeneratorPool

ray.init(address=sys.argv[1], logging_level="ERROR")
out = {}
auto = GeneratorPool(GeneratorConfig(backend="sim", num_actors="auto", num_gpus=1,
                                     num_cpus=0.5), seed=0)
ray.get(auto.info_refs(), timeout=120)
out["auto_size"] = len(auto.slots)
auto.shutdown()

tp = GeneratorPool(GeneratorConfig(backend="sim", num_actors=1, num_gpus=1,
                                   tensor_parallel_size=2, num_cpus=0.5), seed=0)
ray.get(tp.info_refs(), timeout=120)
slot = tp.slots[0]
table = placement_group_table(slot.pg)
out["pg"] = {"strategy": table["strategy"], "state": table["state"],
             "bundles": [dict(b) for b in table["bundles"].values()]}
req = [GenerationRequest("k", None, "hot -> cold\nbig ->")]
first = ray.get(slot.actor.generate.remote(req), timeout=60)[0].instruction
pid = ray.get(slot.actor.pid.remote())
ray.kill(slot.actor, no_restart=False)  # the engine dies; Ray restarts it in its group
deadline = time.monotonic() + 120
while True:
    try:
        again = ray.get(slot.actor.generate.remote(req), timeout=60)[0].instruction
        break
    except ray.exceptions.RayActorError:
        if time.monotonic() > deadline:
            raise
        time.sleep(1)
out["restarted"] = ray.get(slot.actor.pid.remote()) != pid
out["same_answer"] = first == again
pg_id = slot.pg.id.hex()
tp.shutdown()
time.sleep(1)
out["pg_after"] = placement_group_table().get(pg_id, {}).get("state")
print(json.dumps(out))
"""


@pytest.mark.slow
def test_gpu_scheduling_on_logical_gpus(ray_head):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", GPU_SCHEDULING, ray_head.gcs],
                         env=ray_head.client_env, capture_output=True, text=True, timeout=600,
                         check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["auto_size"] == 2  # `auto`: one actor per logical GPU
    # Tensor parallel 2: one group, two 1-GPU bundles on one node, the actor in bundle 0.
    assert out["pg"]["strategy"] == "STRICT_PACK" and out["pg"]["state"] == "CREATED"
    assert out["pg"]["bundles"] == [{"GPU": 1.0, "CPU": 0.5}, {"GPU": 1.0}]
    assert out["restarted"] and out["same_answer"]  # actor death is survived
    assert out["pg_after"] == "REMOVED"  # shutdown frees the GPUs
