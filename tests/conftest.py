import os
import sys
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # each of pytest.ini's processes on one thread (and the processes it starts): torch's
    # default of one per core oversubscribes them (on 2 cores the suite took 328 s so, against 119 s)
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """The slow tests first (stable otherwise): with pytest.ini's one-at-a-time scheduling the
    two processes share them out, and the short ones that follow even out the finish."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "diagnostics"))  # the diagnostics, tested in test_diagnostics.py


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """The tiny preset's Push-T dataset, collected once per test session."""
    from data import DATA_PRESETS, collect

    out = tmp_path_factory.mktemp("data") / "pusht-tiny"
    return collect(DATA_PRESETS["tiny"], out, workers=1, progress=False)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The whole pipeline at the tiny preset: (root folder, run folder)."""
    from config import PRESETS
    from train import run

    root = tmp_path_factory.mktemp("pipeline")
    out = run(PRESETS["tiny"], root / "runs" / "tiny", progress=False, root=root, workers=1)
    return root, out


@pytest.fixture(scope="session")
def tiny_collide_run(tmp_path_factory):
    """The pipeline on the collide world at its tiny preset: (root folder, run folder)."""
    from config import COLLIDE_PRESETS
    from train import run

    root = tmp_path_factory.mktemp("collide-pipeline")
    out = run(COLLIDE_PRESETS["tiny"], root / "runs" / "collide-tiny", progress=False, root=root,
              workers=1)
    return root, out
