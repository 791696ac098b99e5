"""torchsparse 2.x probes CUDA when imported; on a machine without an NVIDIA driver the backend must
fail with one HiclrError line that names the cause, not a traceback from inside torchsparse.

The probe is reproduced by a stand-in package: torchsparse 2.1.0's ``__init__`` ends with
``backends.init()``, whose first statement is ``torch.cuda.get_device_capability()``
(``torchsparse/backends.py``); the stand-in does exactly that, so no 2.x build is needed here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

STAND_IN = '''import torch
__version__ = "2.1.0"
device_capability = torch.cuda.get_device_capability()  # torchsparse/backends.py, init()
'''

CODE = """
from hiclr.errors import HiclrError
from hiclr.nn.sparse.backends import get_backend
try:
    get_backend("torchsparse")
except HiclrError as exc:
    print("HiclrError:", exc)
else:
    print("imported")
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA driver is present: the probe succeeds here")
def test_cuda_probe_at_import_is_one_hiclr_error(tmp_path):
    pkg = tmp_path / "torchsparse"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(STAND_IN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]), "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", CODE], check=False, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout
    assert lines[0].startswith("HiclrError: torchsparse cannot be imported here: ")
    # the cause (torch's own message: no NVIDIA driver / torch without CUDA) and the way out
    assert "NVIDIA driver" in lines[0] or "not compiled with CUDA" in lines[0], lines[0]
    assert "build_torchsparse.sh" in lines[0] and "train.backend=torch" in lines[0]
    assert "Traceback" not in out.stderr
