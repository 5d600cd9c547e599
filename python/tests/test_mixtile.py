"""pytest entry to the Python package's checks (the same scripts the lit suite runs):

    pip install . pytest && pytest python/tests       # from the repository root

test_api needs numpy only; test_hf is skipped, saying why, without torch and transformers.
They use the repository's test helpers (test/helpers: the float64 reference, the tiny-model
writer), so run them from a checkout."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "test", "helpers"))
sys.path.insert(0, os.path.join(ROOT, "test", "python", "Inputs"))


def test_api(tmp_path, capsys):
    import check_api

    status = check_api.main(str(tmp_path))
    assert status == 0, capsys.readouterr().out


def test_hf(tmp_path, capsys):
    pytest.importorskip("torch", reason="mixtile.hf needs torch")
    pytest.importorskip("transformers", reason="mixtile.hf needs transformers 5.x")
    import check_hf

    status = check_hf.main(str(tmp_path))
    assert status == 0, capsys.readouterr().out


def test_device(tmp_path, capsys):
    """Device tensors on a cuda artifact, over the stand-in device (no GPU needed)."""
    import shutil

    if not shutil.which("g++"):
        pytest.skip("the stand-in CUDA device is built with g++")
    import check_device

    status = check_device.main(ROOT, str(tmp_path))
    assert status == 0, capsys.readouterr().out
