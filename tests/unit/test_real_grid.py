import subprocess
import sys

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
    tiles = grid[0, 1:, 1:].float().unfold(0, 9, 9)  # one band of tiles per class row
    assert tiles.std() > 0 and not tiles[0].equal(tiles[1])  # images, and the first two classes' rows differ
