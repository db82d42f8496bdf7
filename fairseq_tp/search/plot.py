"""Plot a search: BLEU per trial, and where each trial put its steps (cf. the paper's Fig. 4)."""
import os
from typing import Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..files import atomic_file
from .space import ScheduleSpace
from .trial_log import SOURCES, Confirmation, Trial

_COLOURS = {"baseline": "black", "initial": "tab:gray", "botorch": "tab:blue", "random": "tab:orange",
            "paper": "tab:purple"}


def plot_trials(trials: Sequence[Trial], space: ScheduleSpace, path: str,
                confirmations: Sequence[Confirmation] = ()) -> None:
    """Write :func:`trials_figure` to ``path`` atomically; the format follows the extension (PNG if none)."""
    _save_atomically(trials_figure(trials, space, confirmations), path)


def trials_figure(trials: Sequence[Trial], space: ScheduleSpace, confirmations: Sequence[Confirmation] = ()) -> Figure:
    """BLEU per trial, one colour per source (labelled by source), the best so far, the baseline; below,
    each trial's timesteps. ``confirmations`` are drawn at their trial's index, as their BLEU on the
    confirmation sentences."""
    if not trials:
        raise ValueError("no trials to plot")
    # A bare Figure with the Agg canvas: no pyplot, so the caller's backend is left alone.
    figure = Figure(figsize=(8, 6.5), constrained_layout=True)
    FigureCanvasAgg(figure)
    scores_axes, steps_axes = figure.subplots(2, 1, sharex=True)
    indices = [t.index for t in trials]
    best_index = max(trials, key=lambda t: (t.bleu, -t.index)).index

    for source in SOURCES:
        chosen = [t for t in trials if t.source == source]
        if chosen:
            x, y = [t.index for t in chosen], [t.bleu for t in chosen]
            scores_axes.scatter(x, y, s=18, color=_COLOURS[source], label=source)
    index_of = {t.schedule: t.index for t in trials}
    confirmed = [c for c in confirmations if c.schedule in index_of]
    if confirmed:
        scores_axes.scatter([index_of[c.schedule] for c in confirmed], [c.bleu for c in confirmed], s=60,
                            marker="*", color="tab:red", label="confirm (other sentences)")
    best_so_far, running = [], float("-inf")
    for t in trials:
        running = max(running, t.bleu)
        best_so_far.append(running)
    scores_axes.step(indices, best_so_far, where="post", color="tab:green", label="best so far")
    baseline = next((t for t in trials if t.source == "baseline"), None)
    if baseline is not None:
        scores_axes.axhline(baseline.bleu, color="black", linestyle="--", linewidth=0.8, label="baseline")
    scores_axes.set_ylabel("BLEU")
    scores_axes.legend(fontsize="small", loc="best")
    scores_axes.set_title(f"{space.steps}-step schedule search, T = {space.num_timesteps}")

    for t in trials:
        emphasis = dict(s=28, color="tab:red", zorder=3) if t.index == best_index else dict(
            s=8, color=_COLOURS[t.source]
        )
        steps_axes.scatter([t.index] * t.schedule.steps, t.schedule.timesteps, **emphasis)
    steps_axes.set_ylim(-0.02 * space.num_timesteps, 1.02 * (space.num_timesteps - 1))
    steps_axes.set_xlabel("trial")
    steps_axes.set_ylabel("timestep (best in red)")
    return figure


def _save_atomically(figure: Figure, path: str) -> None:
    extension = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    with atomic_file(path) as f:
        figure.savefig(f, format=extension, dpi=120)


def plot_front(front, path: str) -> None:
    """BLEU against the number of steps: what each N writes and uniform, the all-steps BLEU and the target, all
    measured where the front was (the shots, or the confirmation sentences)."""
    figure = Figure(figsize=(6.5, 4.2), constrained_layout=True)
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    steps = [p.steps for p in front.points]
    axes.plot(steps, [p.bleu for p in front.points], "o-", color="tab:blue", label="written")
    axes.plot(steps, [p.uniform_bleu for p in front.points], "s--", color="black", label="uniform")
    axes.axhline(front.reference_bleu, color="tab:green", label=f"all {front.reference_schedule.steps} steps")
    axes.axhline(front.target * front.reference_bleu, color="tab:green", linestyle=":",
                 label=f"target ({front.target:.0%})")
    axes.scatter([front.chosen.steps], [front.chosen.bleu], s=120, facecolors="none",
                 edgecolors="tab:red", zorder=3, label=f"chosen: N = {front.chosen.steps}")
    axes.set_xticks(steps)
    axes.set_xlabel("decoder passes N")
    axes.set_ylabel("BLEU on the " + ("confirmation sentences" if front.measured_on == "confirmation" else "shots"))
    axes.legend(fontsize="small", loc="lower right")
    _save_atomically(figure, path)
