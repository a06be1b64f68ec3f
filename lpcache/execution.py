"""One way to run independent, resumable tasks in parallel, on this machine or on a dask cluster.

    run_parallel(func, items, jobs, backend="local"|"dask", scheduler=None, device=None, on_result=callback)

Both back ends are the same code: `joblib.Parallel(return_as="generator_unordered", batch_size=1)` inside
`joblib.parallel_config(backend=...)`, with joblib's "loky" processes locally and joblib's own "dask" backend
on a dask.distributed cluster (a `distributed.Client` connected to `scheduler`); results reach `on_result`
as workers finish them, in completion order.

Worker loss. Every task must be resumable (lpcache's write atomically and skip finished work), so a task
whose worker died is simply run again:
- dask: the scheduler itself reruns the tasks of a worker that died on another worker, up to its
  `distributed.scheduler.allowed-failures` (dask config, default 3, read where the scheduler runs, e.g.
  `DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=5 dask scheduler`). A task's `retries` (client.submit)
  would not help: they rerun tasks that raised, not tasks whose worker died, and a task that raised here
  has a real error. When the scheduler gives up (KilledWorker: the task killed that many workers, e.g. it
  runs out of memory), that is an InputError; a rerun resumes.
- local: loky reports a worker that died (killed by a signal, out of memory) by breaking the whole pool
  (TerminatedWorkerError); the tasks not finished yet are submitted again to a fresh pool, at most
  WORKER_RETRIES times, then an InputError.

CUDA. Local processes never share a GPU: with device "cuda" (no index) and more than one visible GPU, at
most one process per GPU runs (jobs capped at torch.cuda.device_count()), and each process claims a GPU of
its own for its whole life (a non-blocking file lock per GPU in a folder private to the call, released by
the system when the process dies; torch.cuda.set_device) and calls `func(item, device="cuda:<i>")`. One
visible GPU or an explicit "cuda:<i>" means one process (in this one). On a cluster, start one single-thread
worker per GPU (`CUDA_VISIBLE_DEVICES=<i> dask worker ADDRESS --nthreads 1`, or dask-cuda's
`dask cuda worker`); tasks use their worker's visible GPU.
"""
import logging
import os
import shutil
import sys
import tempfile
import time
from typing import Callable, Iterable, List, Optional, Tuple

from .errors import InputError

log = logging.getLogger(__name__)

BACKENDS = ("local", "dask")
#: How long to wait for a dask scheduler to answer.
DASK_CONNECT_TIMEOUT = "30s"
#: How long to wait for a dask cluster without workers to get one.
DASK_WORKER_TIMEOUT = 30
#: Fresh local pools after a worker died, for the tasks not finished yet.
WORKER_RETRIES = 2
#: How long a process waits for a free GPU (only when the pool has more processes than GPUs).
GPU_CLAIM_TIMEOUT = 60.0

_claimed = {}      # in a worker process: {"folder", "lock", "device"} of its GPU


# ----------------------------------------------------------------------------------------------- planning
def plan_local(jobs: int, device=None) -> Tuple[int, bool]:
    """(processes, pin_gpus) for `jobs` local processes on `device`: on CUDA one process per GPU at most."""
    jobs = max(1, int(jobs))
    name = str(device) if device is not None else "cpu"
    if not name.startswith("cuda") or jobs == 1:
        return jobs, False
    if name != "cuda":                       # an explicit "cuda:<i>": one device, one process
        return 1, False
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    processes = max(1, min(jobs, gpus))
    if processes < jobs:
        log.info("device cuda: %d process%s (one per visible GPU), not %d", processes,
                 "es" if processes != 1 else "", jobs)
    return processes, processes > 1


def threads_per_process(processes: int) -> int:
    """torch threads for each of `processes` local processes: the cores shared out, at least one."""
    return max(1, (os.cpu_count() or 1) // max(1, processes))


# ----------------------------------------------------------------------------------------------- running
def run_parallel(func: Callable, items: Iterable, jobs: int = 1, backend: str = "local", scheduler=None,
                 device=None, on_result: Optional[Callable] = None) -> List:
    """Results of `func(item)` for every item (completion order), each passed to `on_result` as it comes.

    Local with one process (see plan_local): in this process, in item order. With pinned GPUs, `func` is
    called as `func(item, device="cuda:<i>")`.
    """
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    items = list(items)
    on_result = on_result or (lambda result: None)
    if backend == "dask":
        client = connect(scheduler)
        try:
            return _run_rounds(func, items, {"backend": _dask_backend(client)}, -1, None, on_result,
                               where=f"--scheduler {scheduler}")
        finally:
            client.close()
    processes, pin = plan_local(jobs, device)
    if processes == 1 or len(items) <= 1:
        return [_deliver(func(item), on_result) for item in items]
    folder = tempfile.mkdtemp(prefix="lpcache-gpus-") if pin else None
    try:
        return _run_rounds(func, items, {"backend": "loky"}, processes, (folder, processes) if pin else None,
                           on_result, where=f"--jobs {processes}")
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)


def connect(scheduler):
    """A distributed.Client of `scheduler`; a missing package or an unreachable scheduler is an InputError."""
    if not scheduler:
        raise InputError("--backend dask needs --scheduler ADDRESS (e.g. tcp://host:8786)")
    try:
        from distributed import Client
    except ImportError:
        raise InputError("--backend dask: the 'distributed' package is not installed (pip install "
                         "'dask[distributed]')") from None
    try:
        return Client(scheduler, timeout=DASK_CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise InputError(f"--scheduler {scheduler}: cannot connect to the dask scheduler ({exc})") from None


def _dask_backend(client):
    """joblib's dask backend on `client`, with two fixes (joblib 1.6):
    - it never counts fewer than 2 workers: joblib runs a call whose backend has one worker in the calling
      process, so a one-thread cluster would not be used at all;
    - a task that fails in dask itself (KilledWorker: the scheduler gave up on it) reaches joblib: the backend
      only reports results (the tasks' own exceptions come back as results), so such a call hung forever.
    """
    from joblib._dask import DaskDistributedBackend

    class ClusterBackend(DaskDistributedBackend):
        def effective_n_jobs(self, n_jobs):
            return max(2, super().effective_n_jobs(n_jobs))

        def submit(self, func, callback=None):
            future = super().submit(func, callback)
            future.add_done_callback(lambda done: done.exception() and callback(_Failed(done.exception())))
            return future

        def retrieve_result_callback(self, out):
            if isinstance(out, _Failed):
                raise out.error
            return super().retrieve_result_callback(out)

    return ClusterBackend(client=client, wait_for_workers_timeout=DASK_WORKER_TIMEOUT)


class _Failed:
    """A task's failure in dask itself, handed to joblib's completion callback."""

    def __init__(self, error):
        self.error = error


def _deliver(result, on_result):
    on_result(result)
    return result


def _run_rounds(func, items, config, n_jobs, gpus, on_result, where) -> List:
    """joblib.Parallel over the items under `config`; after a lost local worker, again over those left."""
    from joblib import Parallel, delayed, parallel_config

    pending = dict(enumerate(items))
    results = []
    attempt = 0
    while True:
        work = list(pending.items())
        try:
            with parallel_config(**config):
                for index, result in Parallel(n_jobs=n_jobs, batch_size=1, return_as="generator_unordered")(
                        delayed(_call)(func, index, item, gpus) for index, item in work):
                    del pending[index]
                    results.append(_deliver(result, on_result))
            return results
        except Exception as exc:
            if not _worker_lost(exc, where, attempt, len(pending)):
                raise
        attempt += 1


def _worker_lost(exc, where, attempt, left) -> bool:
    """True for a lost local worker with retries left; worker loss past its retries as an InputError."""
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    distributed = sys.modules.get("distributed")
    if distributed is not None and isinstance(exc, distributed.KilledWorker):   # the scheduler's retries spent
        raise InputError(f"{where}: {exc.allowed_failures + 1} workers died running one task (killed, e.g. out of "
                         f"memory? the scheduler's distributed.scheduler.allowed-failures is {exc.allowed_failures}); "
                         f"finished tasks are kept, run again to resume") from None
    if isinstance(exc, TimeoutError) and "has no worker" in str(exc):
        raise InputError(f"{where}: no dask worker joined within {DASK_WORKER_TIMEOUT} s") from None
    if not isinstance(exc, TerminatedWorkerError):
        return False
    if attempt >= WORKER_RETRIES:
        raise InputError(f"{where}: a worker process died {attempt + 1} times (killed by the system, e.g. out "
                         f"of memory?); finished tasks are kept, use fewer --jobs and run again to resume") from None
    log.warning("%s: a worker process died; running the %d unfinished task%s again", where, left,
                "s" if left != 1 else "")
    return True


def _call(func, index, item, gpus):
    """In a worker: (index, func(item)); with `gpus` (lock folder, count), on this process's own GPU."""
    if gpus is None:
        return index, func(item)
    return index, func(item, device=_claim_gpu(*gpus))


def _claim_gpu(folder, count) -> str:
    """This process's GPU ("cuda:<i>", i < count): the first whose lock in `folder` is free, held (and made
    the current CUDA device) for the process's life."""
    if _claimed.get("folder") == folder:
        return _claimed["device"]
    if _claimed:                                  # a pool reused from an earlier call
        _claimed.pop("lock").release()
        _claimed.clear()
    import torch
    from filelock import FileLock, Timeout

    deadline = time.monotonic() + GPU_CLAIM_TIMEOUT
    while True:
        for index in range(count):
            lock = FileLock(os.path.join(folder, f"cuda-{index}.lock"))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            if torch.cuda.is_available():
                torch.cuda.set_device(index)
            _claimed.update(folder=folder, lock=lock, device=f"cuda:{index}")
            return _claimed["device"]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{folder}: no free GPU after {GPU_CLAIM_TIMEOUT:.0f} s")
        time.sleep(0.1)
