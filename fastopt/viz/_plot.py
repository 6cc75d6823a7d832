"""Drawing for :mod:`fastopt.viz`: matplotlib is imported only here, only when
a figure is asked for, and figures are made without pyplot (no global state;
a notebook shows the returned Figure)."""
import numpy as np

PLOT_HINT = "pip install 'fastopt[plot]'"
_GRID = 300  # contour grid points per axis


def require_matplotlib():
    """matplotlib's Figure class, or ImportError naming the extra to install."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(f"drawing needs matplotlib: {PLOT_HINT}") from None
    return Figure


def matplotlib_available():
    try:
        require_matplotlib()
    except ImportError:
        return False
    return True


def maybe_draw(kind, result, draw):
    """The figure of ``result`` (``kind`` 'paths' or 'compare') when ``draw``
    is True (ImportError without matplotlib), or None and matplotlib is
    installed; None when ``draw`` is False."""
    if draw not in (None, True, False):
        raise TypeError(f"draw must be None, True or False, got {draw!r}")
    if draw is False or (draw is None and not matplotlib_available()):
        return None
    return draw_paths(result) if kind == "paths" else draw_compare(result)


def _colours(n):
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


# -- paths ---------------------------------------------------------------------------

def draw_paths(result):
    """Contour map with each optimizer's path, and the loss against steps."""
    from fastopt.viz.functions import get

    Figure = require_matplotlib()
    fn = get(result["function"])
    fig = Figure(figsize=(12.5, 5.2), layout="constrained")
    ax, ax_loss = fig.subplots(1, 2, width_ratios=[1.25, 1])
    _contours(ax, fn)
    for label, colour in zip(result["optimizers"], _colours(len(result["optimizers"]))):
        run = result[label]
        xy = run["path"]
        ax.plot(xy[:, 0], xy[:, 1], "-", color=colour, lw=1.8, label=label)
        ax.plot(xy[-1, 0], xy[-1, 1], "o", color=colour, ms=6, mec="black", mew=0.6)
        ax_loss.plot(np.arange(len(run["loss"])), run["loss"], color=colour, lw=1.8,
                     label=label)
    ax.plot(*result[result["optimizers"][0]]["path"][0], "s", color="black", ms=7,
            label="start")
    if fn.minimum is not None:
        ax.plot(*fn.minimum, "*", color="gold", ms=16, mec="black", label="minimum")
    ax.set(xlim=fn.window[:2], ylim=fn.window[2:], xlabel="x", ylabel="y", title=fn.title)
    ax.legend(loc="best", fontsize=9, framealpha=0.9)
    _loss_axis(ax_loss, result, fn)
    fig.suptitle(f"{fn.story} (fastopt kernels, {result['convention']} convention)",
                 fontsize=11)
    return fig


def _contours(ax, fn):
    x0, x1, y0, y1 = fn.window
    x, y = np.meshgrid(np.linspace(x0, x1, _GRID), np.linspace(y0, y1, _GRID))
    z = fn.value(x, y)
    if fn.log_levels:
        levels = np.logspace(np.log10(max(z.min(), 1e-3)), np.log10(z.max()), 25)
        from matplotlib.colors import LogNorm

        ax.contourf(x, y, z, levels=levels, norm=LogNorm(), cmap="Greys_r", alpha=0.45)
        ax.contour(x, y, z, levels=levels, norm=LogNorm(), colors="grey", linewidths=0.4)
    else:
        ax.contourf(x, y, z, levels=30, cmap="Greys_r", alpha=0.45)
        ax.contour(x, y, z, levels=30, colors="grey", linewidths=0.4)


def _loss_axis(ax, result, fn):
    losses = np.concatenate([result[k]["loss"] for k in result["optimizers"]])
    if fn.log_levels and losses.min() > 0:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="f(x, y)", title="loss against steps")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)


def animate_paths(result, path, frames=120, fps=20):
    """Write a GIF of the paths growing step by step (matplotlib's PillowWriter)."""
    require_matplotlib()
    from matplotlib.animation import FuncAnimation, PillowWriter
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = draw_paths(result)
    FigureCanvasAgg(fig)
    n = len(result["optimizers"])
    lines = [line for ax in fig.axes for line in ax.get_lines()
             if line.get_label() in result["optimizers"]]  # the paths, then the losses
    heads = [line for line in fig.axes[0].get_lines() if line.get_marker() == "o"]
    data = [line.get_data() for line in lines]
    longest = max(len(x) for x, _ in data)
    ends = np.unique(np.linspace(1, longest, min(frames, longest)).astype(int))

    def update(end):
        for line, (x, y) in zip(lines, data):
            line.set_data(x[:end], y[:end])
        for head, (x, y) in zip(heads, data[:n]):  # each path's current point
            head.set_data(x[:end][-1:], y[:end][-1:])
        return lines + heads

    FuncAnimation(fig, update, frames=ends, blit=False).save(
        path, writer=PillowWriter(fps=fps), dpi=80)


# -- compare -------------------------------------------------------------------------

_XAXES = (("epoch", "epoch"), ("updates", "updates (optimizer steps)"),
          ("seconds", "seconds"))


def draw_compare(result):
    """Loss and accuracy (rows) against epochs, updates and seconds (columns):
    per-epoch training loss in bold, validation dashed, per-batch loss faint."""
    Figure = require_matplotlib()
    metrics = [m for m in ("loss", "accuracy") if m in result[result["runs"][0]]["history"]]
    fig = Figure(figsize=(15, 4.2 * len(metrics)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(metrics), 3, squeeze=False))
    for label, colour in zip(result["runs"], _colours(len(result["runs"]))):
        run = result[label]
        for row, metric in zip(axes, metrics):
            for ax, (key, _) in zip(row, _XAXES):
                _compare_curves(ax, run, key, metric, colour, label)
    for row, metric in zip(axes, metrics):
        for ax, (key, xlabel) in zip(row, _XAXES):
            ax.set(xlabel=xlabel, ylabel=metric)
            ax.grid(alpha=0.3)
            if key == "updates":  # batch GD makes 1 update an epoch, per-sample SGD 60,000
                ax.set_xscale("log")
    axes[0][0].legend(fontsize=9, loc="best")
    fig.suptitle(f"{result['title']}: training (solid, per-batch faint) and validation "
                 f"(dashed)", fontsize=12)
    return fig


def _compare_curves(ax, run, key, metric, colour, label):
    x = run[key]  # at the end of each epoch
    h = run["history"]
    if metric == "loss":
        ax.plot(*_batch_curve(run["batch_" + key], run["batch_loss"]), color=colour,
                alpha=0.3, lw=0.8)
    ax.plot(x, h[metric], "o-", color=colour, lw=2, ms=4, label=label)
    if "val_" + metric in h:
        ax.plot(x, h["val_" + metric], "s--", color=colour, lw=1.2, ms=3)


def _batch_curve(x, loss, points=2000):
    """The per-batch loss as drawn: a moving mean over 1/300 of the batches
    (per-sample losses are too noisy to read), at most ``points`` points."""
    window = max(1, len(loss) // 300)
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    x = np.asarray(x)[window - 1:]
    every = max(1, len(smooth) // points)
    return x[::every], smooth[::every]
