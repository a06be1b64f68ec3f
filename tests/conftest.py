"""Shared fixtures: the real data in ../shared/data (skipped where absent) and small helpers."""
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: LPCACHE_SHARED_DATA (e.g. a carried subset on a remote GPU machine): a folder holding davis2016-val/
#: (and osvos-davis2017/); default ../shared/data.
SHARED_DATA = os.environ.get("LPCACHE_SHARED_DATA", os.path.join(REPO, "..", "shared", "data"))
DAVIS2016 = os.path.join(SHARED_DATA, "davis2016-val")
OSVOS = os.path.join(SHARED_DATA, "osvos-davis2017")


@pytest.fixture
def davis_root():
    """The 20 real DAVIS-2016 val sequences in DAVIS-2017 layout (../shared/data/davis2016-val)."""
    if not os.path.isdir(DAVIS2016):
        pytest.skip(f"real data not found at {DAVIS2016} (set LPCACHE_SHARED_DATA to a folder holding it)")
    return DAVIS2016


@pytest.fixture
def osvos_root():
    """OSVOS multi-object masks for the same frames (../shared/data/osvos-davis2017)."""
    if not os.path.isdir(OSVOS):
        pytest.skip(f"real data not found at {OSVOS} (set LPCACHE_SHARED_DATA to a folder holding it)")
    return OSVOS


@pytest.fixture
def one_thread():
    """torch on one thread (this 2-core machine is shared; small ops are faster without thread hand-offs)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
