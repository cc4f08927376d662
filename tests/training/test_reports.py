"""What a run leaves for people is whole: the GIF has a frame per sample grid, the plot and grids decode."""
import imageio.v3 as iio
import numpy as np
from PIL import Image

GRID_32 = 8 * 32 + 9 * 2  # 64 faces of 32 px, 2 px apart


def test_progress_gif_has_one_frame_per_sample_grid(trained_run):
    frames = iio.imread(trained_run / "progress.gif", index=None)
    grids = sorted((trained_run / "samples").glob("step-*.png"))
    assert frames.shape == (len(grids), GRID_32, GRID_32, 3) and len(grids) == 3  # after step 1, then every 2
    last = np.asarray(Image.open(grids[-1]).convert("RGB"))
    assert np.abs(frames[-1].astype(int) - last.astype(int)).mean() < 8, "the last frame is the last grid (GIF palette)"


def test_loss_plot_is_a_decodable_image_of_the_figure(trained_run):
    with Image.open(trained_run / "losses.png") as plot:
        plot.load()
        assert plot.size == (700, 400)
        assert np.asarray(plot.convert("L")).std() > 5, "axes and curves, not a blank image"
