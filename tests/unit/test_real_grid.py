import subprocess
import sys

import torch
from torchvision.io import read_image

from conftest import REPO


def test_real_grid_writes_one_row_per_class(tmp_path):
    out = tmp_path / "grid.png"
    script = REPO / "experiments" / "figures" / "real_grid.py"
    cmd = [sys.executable, str(script), "--flag", "digits", "--per_class", "3", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=tmp_path)
    grid = read_image(str(out))
    # digits: 10 classes of 8x8 images, 3 per row, 1-pixel padding around each
    assert grid.shape[1:] == (10 * 9 + 1, 3 * 9 + 1)
    assert grid.float().std() > 0 and grid.dtype == torch.uint8
