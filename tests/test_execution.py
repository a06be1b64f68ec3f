"""lpcache.execution: one joblib code path for local processes and a dask cluster; tasks whose worker died
run again; on CUDA one local process per GPU, each keeping its own GPU (planned on CPU, GPUs faked)."""
import json
import os
import re
import threading
import time

import pytest

from lpcache import execution
from lpcache.config import SweepGrid
from lpcache.errors import InputError
from lpcache.execution import plan_local, run_parallel
from lpcache.sweeping import plan_sweep, run_tasks
from test_sweep import short_data  # noqa: F401  (module fixture: DAVIS subset + caches in tmp)


def square_with_pid(x):
    """(x, x*x, pid of the process that ran it)."""
    return x, x * x, os.getpid()


def die_once(item):
    """(name, pid); the first run of item "victim" kills its own process mid-task (marker: its pid)."""
    name, marker = item
    if name == "victim" and not os.path.exists(marker):
        with open(marker, "w") as handle:
            handle.write(str(os.getpid()))
        time.sleep(0.2)
        os._exit(1)
    return name, os.getpid()


def always_die(_):
    os._exit(1)


def device_and_pid(x, device=None):
    """(device given by run_parallel, pid); slow enough that every process gets work."""
    time.sleep(0.3)
    return device, os.getpid()


# ----------------------------------------------------------------------------------------------- planning
@pytest.fixture
def fake_gpus(monkeypatch):
    """torch.cuda reporting `count` GPUs (set by calling the returned function)."""
    import torch

    def fake(count):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: count)

    return fake


def test_cpu_jobs_are_processes():
    assert plan_local(3, "cpu") == (3, False)
    assert plan_local(1, None) == (1, False)


def test_cuda_gets_one_process_per_gpu(fake_gpus):
    fake_gpus(2)
    assert plan_local(4, "cuda") == (2, True)       # never 4 processes on 2 GPUs
    assert plan_local(2, "cuda") == (2, True)
    assert plan_local(1, "cuda") == (1, False)
    assert plan_local(4, "cuda:1") == (1, False)    # an explicit device: one process on it
    fake_gpus(1)
    assert plan_local(4, "cuda") == (1, False)      # one GPU: this process only


def test_each_process_keeps_its_own_gpu(fake_gpus):
    fake_gpus(2)
    results = run_parallel(device_and_pid, range(8), jobs=8, device="cuda")
    assert len(results) == 8
    device_of = {}
    for device, pid in results:
        assert device_of.setdefault(pid, device) == device      # a process never changes GPU
    assert len(device_of) == 2 and sorted(device_of.values()) == ["cuda:0", "cuda:1"]   # one per GPU


def test_a_claimed_gpu_is_not_given_twice(tmp_path, fake_gpus, monkeypatch):
    from filelock import FileLock

    import torch

    fake_gpus(2)
    current = []
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.setattr(execution, "_claimed", {})
    other = FileLock(str(tmp_path / "cuda-0.lock"))     # another process's claim (flock: per open file)
    other.acquire()
    try:
        assert execution._claim_gpu(str(tmp_path), 2) == "cuda:1"
        assert execution._claim_gpu(str(tmp_path), 2) == "cuda:1"      # kept for the process's life
        assert current == [1]
    finally:
        execution._claimed.pop("lock").release()
        other.release()


# ----------------------------------------------------------------------------------------------- local
def test_local_processes_give_the_in_process_results():
    seen = []
    in_process = run_parallel(square_with_pid, range(6), jobs=1, on_result=seen.append)
    assert seen == in_process and {pid for *_, pid in in_process} == {os.getpid()}
    seen = []
    parallel = run_parallel(square_with_pid, range(6), jobs=2, on_result=seen.append)
    assert seen == parallel
    assert sorted(r[:2] for r in parallel) == sorted(r[:2] for r in in_process) == [(x, x * x) for x in range(6)]
    assert os.getpid() not in {pid for *_, pid in parallel}


def test_local_worker_killed_mid_task_is_run_again(tmp_path):
    marker = str(tmp_path / "victim.pid")
    items = [(name, marker) for name in ("a", "victim", "b", "c")]
    results = dict(run_parallel(die_once, items, jobs=2))
    assert sorted(results) == ["a", "b", "c", "victim"]
    assert results["victim"] != int(open(marker).read())    # run again, by another process


def test_local_worker_dying_every_time_is_an_input_error(monkeypatch):
    monkeypatch.setattr(execution, "WORKER_RETRIES", 1)
    with pytest.raises(InputError, match=r"--jobs 2: a worker process died 2 times"):
        run_parallel(always_die, [1, 2], jobs=2)


def test_unknown_backend_is_an_input_error():
    with pytest.raises(InputError, match="backend 'slurm'"):
        run_parallel(square_with_pid, [1], backend="slurm")


def test_sweep_tasks_over_processes_equal_in_process(short_data, tmp_path):
    root, cache_a, _ = short_data
    grid = SweepGrid(temperature=(0.05, 0.7), topk=(4,), radius=(4.0,), video_len=(2,))
    shards = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        plan = plan_sweep([cache_a], root, str(out), grid, device="cpu", threads=1)
        summaries = run_tasks(plan.tasks, jobs=jobs, progress=False)
        assert sorted((s["sequence"], s["scored"]) for s in summaries) == \
            sorted((t.sequence.name, len(t.score)) for t in plan.tasks)
        shards[jobs] = {t.sequence.name: json.load(open(t.shard_path))["settings"] for t in plan.tasks}
    assert shards[2] == shards[1]


# ----------------------------------------------------------------------------------------------- dask
@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of 2 single-thread worker processes (nanny-restarted when one dies)."""
    distributed = pytest.importorskip("distributed", reason="dask.distributed not installed (pip install "
                                                            "'lpcache[dask]')")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as local:
        yield local


def test_dask_gives_the_local_results(cluster):
    seen = []
    results = run_parallel(square_with_pid, range(6), backend="dask", scheduler=cluster.scheduler_address,
                           on_result=seen.append)
    assert seen == results and sorted(r[:2] for r in results) == [(x, x * x) for x in range(6)]
    assert os.getpid() not in {pid for *_, pid in results}


def test_dask_worker_killed_mid_task_is_run_again(cluster, tmp_path):
    marker = str(tmp_path / "victim.pid")
    items = [(name, marker) for name in ("a", "victim", "b", "c")]
    results = dict(run_parallel(die_once, items, backend="dask", scheduler=cluster.scheduler_address))
    assert sorted(results) == ["a", "b", "c", "victim"]
    assert results["victim"] != int(open(marker).read())    # rerun by the scheduler on a live worker


def test_one_thread_cluster_is_used_and_its_giving_up_is_an_input_error():
    distributed = pytest.importorskip("distributed", reason="dask.distributed not installed")
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                      silence_logs=50) as local:
            results = run_parallel(square_with_pid, [1, 2], backend="dask", scheduler=local.scheduler_address)
            assert os.getpid() not in {pid for *_, pid in results}      # joblib would run 1 "worker" here
            outcome = _within(60, run_parallel, always_die, [1], backend="dask", scheduler=local.scheduler_address)
    assert isinstance(outcome, InputError), outcome
    assert re.fullmatch(r"--scheduler tcp://\S+: 1 workers died running one task .*allowed-failures is 0\); "
                        r"finished tasks are kept, run again to resume", str(outcome))


def _within(seconds, func, *args, **kwargs):
    """What func(*args, **kwargs) returned or raised, run in a thread; fails the test past `seconds` (a hang)."""
    outcome = []

    def target():
        try:
            outcome.append(func(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001  (the outcome under test)
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"no result after {seconds} s: the call hangs"
    return outcome[0]


def test_dask_without_scheduler_is_an_input_error():
    with pytest.raises(InputError, match="--backend dask needs --scheduler"):
        run_parallel(square_with_pid, [1], backend="dask")


def test_cluster_without_workers_is_an_input_error(monkeypatch):
    distributed = pytest.importorskip("distributed", reason="dask.distributed not installed")
    monkeypatch.setattr(execution, "DASK_WORKER_TIMEOUT", 1)
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None, silence_logs=50) as local:
        with pytest.raises(InputError, match=r"--scheduler \S+: no dask worker joined within 1 s"):
            run_parallel(square_with_pid, [1, 2], backend="dask", scheduler=local.scheduler_address)
