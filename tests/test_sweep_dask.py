"""`lpcache sweep --backend dask`: the same CSVs on a dask.distributed LocalCluster (2 worker processes)
as with the local backend (in-process and joblib)."""
import os

import pytest

from lpcache.config import SweepGrid
from lpcache.errors import InputError
from lpcache.sweeping import sweep
from test_sweep import short_data  # noqa: F401  (module fixture: DAVIS subset + caches in tmp)

distributed = pytest.importorskip("distributed")

SEQUENCES = ["car-shadow", "motocross-jump"]
GRID = SweepGrid(temperature=(0.05, 0.7), topk=(4,), radius=(4.0, 12.0), video_len=(2,))


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def test_dask_cluster_gives_the_local_csvs(short_data, tmp_path):
    root, _, cache_b = short_data
    local = str(tmp_path / "local")
    sweep([cache_b], root, local, GRID, sequences=SEQUENCES, threads=1, progress=False)
    parallel = str(tmp_path / "joblib")
    sweep([cache_b], root, parallel, GRID, sequences=SEQUENCES, jobs=2, threads=1, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cluster:
        remote = str(tmp_path / "dask")
        sweep([cache_b], root, remote, GRID, sequences=SEQUENCES, backend="dask",
              scheduler=cluster.scheduler_address, threads=1, progress=False)
        with distributed.Client(cluster.scheduler_address) as client:
            workers = client.run(os.getpid)
    assert len(set(workers.values())) == 2 and os.getpid() not in workers.values()
    for name in ("sweep_results.csv", "sweep_per_object.csv"):
        assert _read(os.path.join(remote, name)) == _read(os.path.join(local, name))
        assert _read(os.path.join(parallel, name)) == _read(os.path.join(local, name))
    # the shards were written by the workers, one per (cache, video)
    shards = [n for n in os.listdir(os.path.join(remote, "shards", "patchB")) if not n.endswith(".lock")]
    assert sorted(shards) == sorted(s + ".json" for s in SEQUENCES)


def test_unreachable_scheduler_is_an_input_error(short_data, tmp_path, monkeypatch):
    import lpcache.execution

    monkeypatch.setattr(lpcache.execution, "DASK_CONNECT_TIMEOUT", "2s")
    root, cache_a, _ = short_data
    with pytest.raises(InputError, match="cannot connect to the dask scheduler"):
        sweep([cache_a], root, str(tmp_path / "out"), SweepGrid(), sequences=["car-shadow"], backend="dask",
              scheduler="tcp://127.0.0.1:9", progress=False)
