"""Side-by-side animation of vorticity fields (e.g. reference | learned closure | no closure).

MP4 through imageio's ffmpeg plugin (imageio-ffmpeg ships its own ffmpeg binary); when no
ffmpeg can be found the frames go to a GIF beside the requested path instead. Frames are drawn
once with matplotlib (a figure whose image data is updated per frame), sized in multiples of 16
pixels so the H.264 encoder needs no resizing. The file is written atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from diffclosure.atomic import atomic_path  # noqa: E402

log = logging.getLogger(__name__)


def ffmpeg_available() -> bool:
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        return True
    except Exception:  # missing package or binary: both mean "no ffmpeg"
        return False


def frame_indices(count: int, max_frames: int) -> np.ndarray:
    """At most max_frames indices, evenly strided, always including the first record."""
    stride = max(1, -(-count // max_frames))
    return np.arange(0, count, stride)


def render_frames(panels: dict, times, max_frames: int = 200, length: float = 1.0):
    """Yield RGB frames (H, W, 3) uint8, one per (strided) record; panels[name] = (T, n, n)."""
    names = list(panels)
    first = np.asarray(panels[names[0]])
    finite = first[np.isfinite(first)]
    vmax = float(np.abs(finite).max()) if finite.size else 1.0
    width_px, height_px = 320 * len(names), 352
    fig, axes = plt.subplots(1, len(names), figsize=(width_px / 100, height_px / 100), dpi=100,
                             squeeze=False)
    images = []
    for ax, name in zip(axes[0], names, strict=True):
        images.append(ax.imshow(np.zeros_like(first[0]), origin="lower", cmap="RdBu_r",
                                vmin=-vmax, vmax=vmax, extent=(0, length, 0, length)))
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    label = fig.suptitle("")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.85, wspace=0.04)
    try:
        for j in frame_indices(first.shape[0], max_frames):
            for im, name in zip(images, names, strict=True):
                im.set_data(np.asarray(panels[name][j]))
            label.set_text(f"t = {float(times[j]):.3g}")
            fig.canvas.draw()
            yield np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    finally:
        plt.close(fig)


def write_animation(path, panels: dict, times, fps: int = 10, max_frames: int = 200,
                    length: float = 1.0) -> Path:
    """Write the animation to `path` (MP4), or to path with .gif without ffmpeg; return it."""
    import imageio.v2 as imageio

    path = Path(path)
    frames = list(render_frames(panels, times, max_frames, length))
    if ffmpeg_available() and path.suffix.lower() == ".mp4":
        with atomic_path(path) as tmp:
            writer = imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps,
                                        codec="libx264", pixelformat="yuv420p",
                                        macro_block_size=16)
            for f in frames:
                writer.append_data(f)
            writer.close()
        return path
    gif = path.with_suffix(".gif")
    log.warning("ffmpeg not available: writing %s instead of %s", gif, path)
    with atomic_path(gif) as tmp:
        imageio.mimsave(tmp, frames, format="GIF", duration=1.0 / fps, loop=0)
    return gif
