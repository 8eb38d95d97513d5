"""Save loss curves as a PNG next to the example that made them, if matplotlib is there.

matplotlib is optional (``pip install -e ".[plot]"``); without it the example says how
to get the plot and finishes all the same.
"""

from __future__ import annotations

from pathlib import Path


def save_curves(
    script: str,
    panels: dict[str, dict[str, list[float]]],
    xlabel: str = "step",
) -> Path | None:
    """Plot ``{panel title: {label: losses}}``, one panel each, on a log scale, into
    ``<script without .py>.png``.

    Returns the path written, or None (and says why) when matplotlib is missing.
    """
    path = Path(script).with_suffix(".png")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f'plot: not saved (matplotlib is missing: pip install -e ".[plot]" for {path.name})')
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), dpi=110)
    for ax, (title, curves) in zip(getattr(axes, "flat", [axes]), panels.items()):
        for label, losses in curves.items():
            ax.plot(range(len(losses)), losses, label=label, linewidth=1.4)
        ax.set(yscale="log", xlabel=xlabel, ylabel="loss", title=title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    try:
        shown = path.relative_to(Path.cwd())
    except ValueError:
        shown = path
    print(f"plot: saved {shown}")
    return path
