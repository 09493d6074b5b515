import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """The tiny preset's Push-T dataset, collected once per test session."""
    from data import DATA_PRESETS, collect

    out = tmp_path_factory.mktemp("data") / "pusht-tiny"
    return collect(DATA_PRESETS["tiny"], out, workers=2, progress=False)
