"""Figures of the paper's supplementary (Fig. 1 receptive fields, Fig. 2 temporal weights), the CMC curve, a
search's ranked results (`drsta search --figure`) and a sweep's trials (`drsta tune`).

Every function returns a `matplotlib.figure.Figure` drawn on its own Agg canvas: pyplot is never imported and
no backend is selected globally, so this module is safe to import and call on Ray workers, and a figure is
freed when the last reference to it goes (no `plt.close` needed).

Shape legend: N frames of one tracklet, H×W frame pixels, K attention models, h×w attention-map cells, P body
parts (drsta.data.annotations.PARTS). The attention figures draw a synthetic set's ground truth in when given it
(`truth`, a `FrameAnnotations` of the clip's frames) and are the same without.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from drsta.claims import degraded_frames
from drsta.data.annotations import PARTS, FrameAnnotations

# Width of one image panel in inches; its height follows the frame's aspect ratio (re-id crops are ~2:1).
PANEL_WIDTH_IN = 1.3
# Weight of the heat map when it is blended over a frame.
HEATMAP_ALPHA = 0.5
HEATMAP_CMAP = "jet"
HIGHLIGHT_COLOR = "tab:red"
# Temporal figure: where the small per-model weights start below a frame, and their line height (points).
PER_MODEL_OFFSET_PT = 20
PER_MODEL_LINE_PT = 9
# Ranks marked on the CMC curve (those not beyond its length).
MARKED_RANKS = (1, 5, 10, 20)
# Ground truth drawn in: part boxes (Fig. 1), one colour per part of PARTS, visible over the jet heat map and in
# the legend on white; degraded frames (Fig. 2), a dashed border inside the panel and their condition above it.
PART_COLORS = {"head": "magenta", "torso": "deepskyblue", "legs": "lime", "accessory": "gold"}
PART_LINE_WIDTH = 1.0
DEGRADED_COLOR = "tab:orange"
SHOWN_OCCLUSION = 0.05  # an occluded fraction from which it is written above the frame (degraded from 0.3)
# Ranked results, as torchreid's visualize_ranked_results: a match's border says whether it is the query's person.
MATCH_COLOR = "tab:green"
MISMATCH_COLOR = "tab:red"
UNKNOWN_COLOR = "tab:gray"  # the query's or the match's identity is unknown
QUERY_COLOR = "black"
RANK_BORDER_PT = 3.0
RANK_FRAME_WIDTH_IN = 0.55  # one frame of a strip; its height follows the frames' aspect ratio
RANK_TILE_MIN_WIDTH_IN = 0.8  # a one-frame tile is widened to this, for the text under it
MAX_QUERY_FRAMES = 4
MAX_MATCH_FRAMES = 4
# The most frames of a row's matches together: top-3 gets 4-frame strips, top-10 each match's middle frame.
MATCH_FRAME_BUDGET = 12
PLACEHOLDER_GRAY = 0.85
# Sweep figure: subplots per row; a positive axis spanning at least this ratio is drawn on a log scale.
SWEEP_COLUMNS = 3
LOG_SPAN = 10.0


def receptive_fields_figure(
    frames: np.ndarray,
    maps: np.ndarray,
    titles: Sequence[str] | None = None,
    max_frames: int = 4,
    truth: FrameAnnotations | None = None,
) -> Figure:
    """Supplementary Fig. 1: each frame next to the receptive field of each of its K spatial attention models.

    One row per shown frame (up to `max_frames`, evenly spaced over the clip); the first column is the frame,
    column k + 1 the frame with map k upsampled bilinearly to H×W, divided by its max and blended as a heat map.
    With `truth`, every panel also shows the body parts' boxes (thin rectangles, PART_COLORS, with a legend on
    top), to see which part each model attends to.

    Args:
        frames: (N, H, W, 3) RGB frames of one tracklet, uint8 or float in [0, 1].
        maps: (N, K, h, w) spatial attention maps of the same clip (each sums to 1 over h·w), e.g. one clip of
            `DRSTAOutput.spatial_maps`.
        titles: K column titles (e.g. the body part each model attends to); default "model 1" … "model K".
        max_frames: the most rows to show.
        truth: the ground truth of the same N frames, looked up at the frames' size (`Annotations.lookup(...,
            size=(H, W))`), or None.

    Returns:
        A figure with rows × (K + 1) axes.
    """
    images_NHW3 = _as_float_rgb(frames)
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 4 or 0 in maps.shape[1:]:
        raise ValueError(f"maps must have shape (N, K, h, w) with K, h, w >= 1, got {maps.shape}")
    num_frames, num_models = maps.shape[:2]
    if num_frames != len(images_NHW3):
        raise ValueError(f"frames and maps must have the same N, got frames N={len(images_NHW3)}, maps N={num_frames}")
    if not np.isfinite(maps).all():
        raise ValueError("maps contains NaN or inf: the attention maps it came from are broken")
    if titles is None:
        titles = [f"model {k + 1}" for k in range(num_models)]
    if len(titles) != num_models:
        raise ValueError(f"titles must have one entry per attention model (K={num_models}), got {len(titles)}")
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    height, width = images_NHW3.shape[1:3]
    _check_truth(truth, num_frames, (height, width))

    num_rows = min(num_frames, max_frames)
    shown = np.linspace(0, num_frames - 1, num_rows).round().astype(int)  # distinct since num_rows <= N
    legend_in = 0.0 if truth is None else 0.22
    fig, axes = _panel_grid(num_rows, num_models + 1, height / width, left_in=0.25, top_in=0.25 + legend_in,
                            below_in=0.0)  # fmt: skip
    heat_cmap = colormaps[HEATMAP_CMAP]
    for row, n in enumerate(shown):
        _show(axes[row, 0], images_NHW3[n])
        axes[row, 0].set_ylabel(f"frame {n + 1}", fontsize=8)
        for k in range(num_models):
            heat_HW = _upsample_bilinear(maps[n, k], height, width)
            heat_HW = heat_HW / max(heat_HW.max(), np.finfo(np.float64).tiny)  # display only: peak = 1
            blended = (1 - HEATMAP_ALPHA) * images_NHW3[n] + HEATMAP_ALPHA * heat_cmap(heat_HW)[..., :3]
            _show(axes[row, k + 1], blended)
        if truth is not None:
            for ax in axes[row]:
                _draw_part_boxes(ax, truth.part_boxes[n])
    axes[0, 0].set_title("frame", fontsize=9)
    for k, title in enumerate(titles):
        axes[0, k + 1].set_title(title, fontsize=9)
    if truth is not None:
        handles = [Line2D([], [], color=PART_COLORS[part], linewidth=2, label=part) for part in PARTS]
        fig.legend(handles=handles, loc="upper center", ncol=len(PARTS), fontsize=7, frameon=False,
                   bbox_to_anchor=(0.5, 1.0), handlelength=1.2, columnspacing=1.0)  # fmt: skip
    return fig


def temporal_weights_figure(frames: np.ndarray, weights: np.ndarray, truth: FrameAnnotations | None = None) -> Figure:
    """Supplementary Fig. 2: the frames of a clip in a row with their temporal attention weights underneath.

    Under each frame: the mean weight over the K models (large, formatted "0.00") and, small, the K per-model
    weights (when K > 1). The frame with the highest mean weight is framed and its number drawn in red. With
    `truth`, each frame's condition is written above it ("clean", "occluded 45%", "blur", "out of crop",
    "garbage"), and the degraded frames (`drsta.claims.degraded_frames`: those the temporal claims expect to be
    down-weighted) get it in orange with a dashed orange border inside the panel.

    Args:
        frames: (N, H, W, 3) RGB frames of one tracklet, uint8 or float in [0, 1].
        weights: (N, K) temporal attention weights of the same clip, e.g. one clip of
            `DRSTAOutput.temporal_weights` (each column sums to 1 over the N frames).
        truth: the ground truth of the same N frames (`Annotations.lookup`), or None.

    Returns:
        A figure with N axes.
    """
    images_NHW3 = _as_float_rgb(frames)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 2:
        raise ValueError(f"weights must have shape (N, K), got {weights.shape}")
    if len(weights) != len(images_NHW3):
        raise ValueError(
            f"frames and weights must have the same N, got frames N={len(images_NHW3)}, weights N={len(weights)}"
        )
    if weights.shape[1] == 0 or not np.isfinite(weights).all():
        raise ValueError(f"weights must be finite with K >= 1 attention models, got shape {weights.shape}")

    num_frames, num_models = weights.shape
    height, width = images_NHW3.shape[1:3]
    _check_truth(truth, num_frames, None)
    mean_N = weights.mean(axis=1)
    best = int(mean_N.argmax())
    # The per-model weights go three to a line so that K = 6 still fits under a panel; with K = 1 they would
    # only repeat the mean.
    per_model_lines = (num_models + 2) // 3 if num_models > 1 else 0
    below_pt = PER_MODEL_OFFSET_PT + PER_MODEL_LINE_PT * per_model_lines + 4
    top_in = 0.0 if truth is None else 0.2
    fig, axes = _panel_grid(1, num_frames, height / width, left_in=0.0, top_in=top_in, below_in=below_pt / 72)
    degraded_N = None if truth is None else degraded_frames(truth.occlusion, truth.bad)  # (N,)
    for n, ax in enumerate(axes[0]):
        _show(ax, images_NHW3[n])
        is_best = n == best
        for spine in ax.spines.values():
            spine.set_visible(is_best)
            spine.set_color(HIGHLIGHT_COLOR)
            spine.set_linewidth(3)
        if truth is not None:
            color = DEGRADED_COLOR if degraded_N[n] else "dimgray"
            ax.set_title(frame_condition(float(truth.occlusion[n]), str(truth.bad[n])), fontsize=7, color=color,
                         fontweight="bold" if degraded_N[n] else "normal", pad=2)  # fmt: skip
            if degraded_N[n]:  # inside the panel, so that it shows beside the heaviest frame's red spines
                ax.add_patch(Rectangle((0.03, 0.015), 0.94, 0.97, transform=ax.transAxes, fill=False,
                                       edgecolor=DEGRADED_COLOR, linewidth=2, linestyle="--"))  # fmt: skip
        ax.annotate(
            f"{mean_N[n]:.2f}",
            xy=(0.5, 0),
            xycoords="axes fraction",
            xytext=(0, -3),
            textcoords="offset points",
            ha="center",
            va="top",
            fontsize=11,
            fontweight="bold" if is_best else "normal",
            color=HIGHLIGHT_COLOR if is_best else "black",
        )
        if num_models == 1:
            continue
        per_model = [f"{w:.2f}" for w in weights[n]]
        lines = [" ".join(per_model[i : i + 3]) for i in range(0, num_models, 3)]
        ax.annotate(
            "\n".join(lines),
            xy=(0.5, 0),
            xycoords="axes fraction",
            xytext=(0, -PER_MODEL_OFFSET_PT),
            textcoords="offset points",
            ha="center",
            va="top",
            fontsize=7,
            color="dimgray",
        )
    return fig


def frame_condition(occlusion: float, bad: str) -> str:
    """A frame's condition in words: its bad-frame kind and/or its occluded fraction (from SHOWN_OCCLUSION), or
    "clean", e.g. "blur · occluded 45%"."""
    words = [] if bad == "none" else [bad.replace("_", " ")]
    if occlusion >= SHOWN_OCCLUSION:
        words.append(f"occluded {occlusion:.0%}")
    return " · ".join(words) or "clean"


def cmc_figure(cmc: np.ndarray, label: str = "", mAP: float | None = None) -> Figure:
    """The CMC curve: matching rate (%) against rank 1 … len(cmc), with ranks 1/5/10/20 marked and listed.

    Args:
        cmc: (R,) cumulative matching rates in [0, 1], rank 1 first (as `drsta.metrics.evaluate` returns).
        label: the curve's name in the legend (e.g. the model or dataset).
        mAP: mean average precision in [0, 1], added to the legend when given.

    Returns:
        A figure with one axes.
    """
    cmc = np.asarray(cmc, dtype=np.float64)
    if cmc.ndim != 1 or len(cmc) == 0:
        raise ValueError(f"cmc must be a non-empty (R,) curve of matching rates, got shape {cmc.shape}")
    if not (np.isfinite(cmc).all() and (cmc >= 0).all() and (cmc <= 1).all()):
        raise ValueError("cmc values must be rates in [0, 1] (not percentages)")
    if mAP is not None and not 0 <= mAP <= 1:
        raise ValueError(f"mAP must be in [0, 1] (not a percentage), got {mAP}")

    ranks = np.arange(1, len(cmc) + 1)
    percent = 100 * cmc
    legend = " ".join(part for part in (label, "" if mAP is None else f"(mAP {100 * mAP:.1f}%)") if part)
    fig = Figure(figsize=(5, 3.6), layout="constrained")
    FigureCanvasAgg(fig)  # the figure's own canvas: no global backend is touched
    ax = fig.add_subplot()
    ax.plot(ranks, percent, "-", color="tab:blue", label=legend or "CMC")
    marked = [r for r in MARKED_RANKS if r <= len(cmc)]
    # The marked values go in the legend rather than next to the points, where they collide on long curves.
    values = " · ".join(f"R{r} {percent[r - 1]:.1f}" for r in marked)
    ax.plot(marked, [percent[r - 1] for r in marked], "o", color="tab:blue", label=f"{values} (%)", clip_on=False)
    ax.set_xlim(0.5, len(cmc) + 0.5)
    ax.set_ylim(0, 100)
    step = 1 if len(cmc) < 10 else 5 * -(-len(cmc) // 50)  # 1, 5, 10, … so that ~10 ticks at most
    ax.set_xticks([1, *range(step, len(cmc) + 1, step)] if step > 1 else ranks)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig


@dataclass(frozen=True)
class RankedTracklet:
    """A tracklet of a ranked-results figure: a query, or one of its gallery matches.

    Attributes:
        frames: (N, H, W, 3) RGB frames, uint8 or float in [0, 1], in temporal order (e.g. the test-time clip);
            None when they could not be read.
        identity: the person's identity; None when unknown.
        camera: the camera's number; None when unknown.
        distance: a match's distance to its query; None for a query.
        name: written under a query (e.g. its path).
        unreadable: why `frames` is None, written on the placeholder tile.
    """

    frames: np.ndarray | None
    identity: int | None = None
    camera: int | None = None
    distance: float | None = None
    name: str = ""
    unreadable: str = ""


def match_color(query_identity: int | None, match_identity: int | None) -> str:
    """A match's border colour: MATCH_COLOR for the query's identity, MISMATCH_COLOR for another one,
    UNKNOWN_COLOR when either is unknown."""
    if query_identity is None or match_identity is None:
        return UNKNOWN_COLOR
    return MATCH_COLOR if query_identity == match_identity else MISMATCH_COLOR


def ranked_results_figure(
    queries: Sequence[RankedTracklet],
    matches: Sequence[Sequence[RankedTracklet]],
    max_query_frames: int = MAX_QUERY_FRAMES,
    max_match_frames: int | None = None,
) -> Figure:
    """Each query's nearest gallery tracklets, as torchreid's `visualize_ranked_results` draws them.

    One row per query: the query's frames (a strip of up to `max_query_frames`, evenly spaced: the middles of
    equal chunks, as the test-time clip picks them) with its name under it, then its matches nearest first, each
    a strip of up to `max_match_frames` frames with its rank above and its distance, identity and camera under
    it. A match's border is green when its identity is the query's, red when it is another one, grey when either
    is unknown (`match_color`). A match whose frames could not be read is a grey tile saying why, with the same
    border and text: one bad file never loses the figure.

    Args:
        queries: the Q queries.
        matches: for each query, its matches nearest first (a row may have fewer than the others, or none).
        max_query_frames: the most frames shown of a query.
        max_match_frames: the most frames shown of a match; default: MATCH_FRAME_BUDGET frames shared by the
            longest row's matches, from 1 (each match's middle frame) to MAX_MATCH_FRAMES.

    Returns:
        A figure with one axes per tracklet, a row's query first; each axes' spines are its border.
    """
    if not queries:
        raise ValueError("queries must hold at least one query")
    if len(matches) != len(queries):
        raise ValueError(f"matches must have one list per query (Q={len(queries)}), got {len(matches)}")
    num_columns = max(len(row) for row in matches)
    if max_match_frames is None:
        max_match_frames = min(max(MATCH_FRAME_BUDGET // max(num_columns, 1), 1), MAX_MATCH_FRAMES)
    if max_query_frames < 1 or max_match_frames < 1:
        raise ValueError(f"max_query_frames and max_match_frames must be >= 1, got {max_query_frames}, "
                         f"{max_match_frames}")  # fmt: skip
    shown = [q.frames for q in queries] + [m.frames for row in matches for m in row]
    readable = [frames for frames in shown if frames is not None]
    # Every strip is laid out for the first readable tracklet's frame shape (search resizes all to the model's);
    # another shape is letterboxed in its tile. Nothing readable: 2:1, the shape of re-id crops.
    frame_hw = _as_float_rgb(readable[0]).shape[1:3] if readable else (64, 32)
    aspect = frame_hw[0] / frame_hw[1]

    frame_height_in = RANK_FRAME_WIDTH_IN * aspect
    query_width_in = max(max_query_frames * RANK_FRAME_WIDTH_IN, RANK_TILE_MIN_WIDTH_IN)
    match_width_in = max(max_match_frames * RANK_FRAME_WIDTH_IN, RANK_TILE_MIN_WIDTH_IN)
    title_in, below_in, gap_in, after_query_in = 0.22, 0.34, 0.12, 0.35
    row_height_in = title_in + frame_height_in + below_in + gap_in
    fig_width_in = gap_in + query_width_in + after_query_in + num_columns * (match_width_in + gap_in)
    fig_height_in = len(queries) * row_height_in + gap_in
    fig = Figure(figsize=(fig_width_in, fig_height_in))
    FigureCanvasAgg(fig)  # the figure's own canvas: no global backend is touched

    def tile(row: int, left_in: float, width_in: float) -> Axes:
        bottom_in = fig_height_in - (row + 1) * row_height_in + below_in
        return fig.add_axes((left_in / fig_width_in, bottom_in / fig_height_in, width_in / fig_width_in,
                             frame_height_in / fig_height_in))  # fmt: skip

    for row, (query, row_matches) in enumerate(zip(queries, matches, strict=True)):
        ax = tile(row, gap_in, query_width_in)
        _draw_tracklet(ax, query, max_query_frames, frame_hw, QUERY_COLOR, 1.5)
        ax.set_title("query", fontsize=8, pad=3)
        characters = int(query_width_in * 72 / (7 * 0.6))  # DejaVu Sans: ~0.6 em per character
        identity = "?" if query.identity is None else query.identity
        _write_below(ax, f"{_shortened(query.name, characters)}\nid {identity}")
        for rank, match in enumerate(row_matches, 1):
            left_in = gap_in + query_width_in + after_query_in + (rank - 1) * (match_width_in + gap_in)
            ax = tile(row, left_in, match_width_in)
            color = match_color(query.identity, match.identity)
            _draw_tracklet(ax, match, max_match_frames, frame_hw, color, RANK_BORDER_PT)
            ax.set_title(f"#{rank}", fontsize=8, pad=3)
            identity = "?" if match.identity is None else match.identity
            camera = "?" if match.camera is None else match.camera
            distance = "" if match.distance is None else f"{match.distance:.3f}"
            _write_below(ax, f"{distance}\nid {identity} · cam {camera}")
    return fig


def sweep_figure(
    params: Mapping[str, Sequence[Any]],
    scores: Sequence[float | None],
    best: int | None = None,
    score_label: str = "best val mAP",
) -> Figure:
    """A sweep's trials: each trial's score against its value of each searched parameter, one subplot each.

    Numbers go on a linear axis with a few ticks, or a log axis when they are positive and span LOG_SPAN or more
    (a symlog one when they also hold 0, e.g. λ = 0 next to 0.01 … 1); anything else (bundle names, lists) is a
    category, in sorted order. Tick labels are rotated and the layout constrained, so that they never overlap.

    Args:
        params: each searched parameter's value in each of the T trials, in trial order.
        scores: the T trials' scores; None for a trial that has none (e.g. it errored first), left out.
        best: the index of the best trial, marked with a star; None to mark none.
        score_label: the y axes' label.

    Returns:
        A figure with one axes per parameter (titled by its name), SWEEP_COLUMNS to a row; in each, the scored
        trials are its first collection and the star, if any, the second.
    """
    if not params:
        raise ValueError("params must name at least one searched parameter")
    for key, values in params.items():
        if len(values) != len(scores):
            raise ValueError(f"params[{key!r}] must have one value per trial (T={len(scores)}), got {len(values)}")
    if best is not None and not (0 <= best < len(scores) and scores[best] is not None):
        raise ValueError(f"best must index a scored trial, got {best}")
    scored = [t for t, score in enumerate(scores) if score is not None]
    num_columns = min(SWEEP_COLUMNS, len(params))
    num_rows = math.ceil(len(params) / num_columns)
    fig = Figure(figsize=(3.3 * num_columns, 2.8 * num_rows), layout="constrained")
    FigureCanvasAgg(fig)  # the figure's own canvas: no global backend is touched
    axes = fig.subplots(num_rows, num_columns, squeeze=False).ravel()
    for ax in axes[len(params) :]:
        ax.set_visible(False)
    for ax, (key, values) in zip(axes, params.items(), strict=False):
        x = _sweep_axis(ax, [values[t] for t in scored])
        ax.scatter(x, [scores[t] for t in scored], s=24, alpha=0.8, color="tab:blue")
        if best is not None:
            ax.scatter(x[scored.index(best)], scores[best], marker="*", s=160, color="tab:orange",
                       edgecolor="black", linewidth=0.6, zorder=3, label="best trial")  # fmt: skip
        ax.set_title(key, fontsize=9)
        ax.set_ylabel(score_label, fontsize=8)
        ax.tick_params(labelsize=8)
        ax.tick_params(axis="x", labelrotation=30)
        ax.grid(alpha=0.3)
    if best is not None:  # above the axes, where it hides no trial
        fig.legend(handles=axes[0].collections[1:], loc="outside upper right", fontsize=7, frameon=False)
    return fig


def _sweep_axis(ax: Axes, values: list[Any]) -> list[float]:
    """Set up `ax`'s x axis for a parameter's values (see `sweep_figure`) and return their x positions."""
    numeric = all(isinstance(v, Real) and not isinstance(v, bool) for v in values)
    if not numeric:
        categories = sorted({str(v) for v in values})
        ax.set_xticks(range(len(categories)), categories)
        ax.set_xlim(-0.5, len(categories) - 0.5)
        return [float(categories.index(str(v))) for v in values]
    x = [float(v) for v in values]
    positive = [v for v in x if v > 0]
    spans_decades = bool(positive) and max(positive) >= LOG_SPAN * min(positive) and min(x) >= 0
    if spans_decades and len(positive) == len(x):
        ax.set_xscale("log")
        # 1-2-5 ticks over up to 3 decades (σ from 0.25 to 8: 0.5, 1, 2, 5), decades beyond; written as plain
        # numbers, and none on the minor ticks, whose labels are what crowds a log axis.
        subs = (1.0, 2.0, 5.0) if max(positive) < 1000 * min(positive) else (1.0,)
        ax.xaxis.set_major_locator(LogLocator(subs=subs, numticks=6))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    elif spans_decades:  # 0 among them (e.g. λ = 0, the ablation): linear up to the smallest positive value
        ax.set_xscale("symlog", linthresh=min(positive))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=all(v.is_integer() for v in x)))
    return x


def _draw_tracklet(
    ax: Axes, tracklet: RankedTracklet, max_frames: int, frame_hw: tuple[int, int], color: str, border_pt: float
) -> None:
    """A tracklet's strip of frames (or a placeholder saying why there are none) framed by coloured spines."""
    if tracklet.frames is None:
        gap = _strip_gap(frame_hw[1])
        width = max_frames * frame_hw[1] + (max_frames - 1) * gap
        _show(ax, np.full((*frame_hw[:1], width, 3), PLACEHOLDER_GRAY))
        characters = max(int(max_frames * RANK_FRAME_WIDTH_IN * 72 / (5.5 * 0.6)), 8)  # per line, at 5.5 pt
        reason = _shortened(tracklet.unreadable or "no frames", 4 * characters, keep="start")
        ax.text(0.5, 0.5, "cannot read\n" + textwrap.fill(reason, characters), transform=ax.transAxes,
                ha="center", va="center", fontsize=5.5, color="black", clip_on=True)  # fmt: skip
    else:
        _show(ax, _strip(_as_float_rgb(tracklet.frames), max_frames))
    for spine in ax.spines.values():
        spine.set_color(color)
        spine.set_linewidth(border_pt)


def _strip(images_NHW3: np.ndarray, max_frames: int) -> np.ndarray:
    """Up to `max_frames` frames side by side on white, the middles of as many equal chunks of the N frames."""
    num_frames = len(images_NHW3)
    count = min(max_frames, num_frames)
    picked = ((np.arange(count) + 0.5) * num_frames / count).astype(int)  # one frame: the middle one
    height, width = images_NHW3.shape[1:3]
    gap = _strip_gap(width)
    strip = np.ones((height, count * width + (count - 1) * gap, 3))
    for i, n in enumerate(picked):
        strip[:, i * (width + gap) : i * (width + gap) + width] = images_NHW3[n]
    return strip


def _strip_gap(width: int) -> int:
    """White columns between the frames of a strip."""
    return max(1, width // 16)


def _write_below(ax: Axes, text: str) -> None:
    ax.annotate(text, xy=(0.5, 0), xycoords="axes fraction", xytext=(0, -3), textcoords="offset points",
                ha="center", va="top", fontsize=7)  # fmt: skip


def _shortened(text: str, characters: int, keep: str = "end") -> str:
    """`text` cut to `characters` characters, marked with "…": its end (of a path, what says most) or its start."""
    if len(text) <= characters:
        return text
    return "…" + text[-(characters - 1) :] if keep == "end" else text[: characters - 1] + "…"


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write `fig` as a PNG at `path` (parent folders are created) and return the path.

    The image is figsize × dpi pixels. Nothing is closed: the figure can still be changed and saved again.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png (figures are written as PNG), got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def _panel_grid(
    num_rows: int, num_cols: int, aspect: float, left_in: float, top_in: float, below_in: float
) -> tuple[Figure, np.ndarray]:
    """A figure on its own Agg canvas holding a (num_rows, num_cols) grid of image panels, laid out exactly.

    Each panel is PANEL_WIDTH_IN wide and `aspect` (height / width) times as tall. The layout is computed here
    rather than by constrained layout, which cannot both keep the images' aspect and make room for the text
    drawn below them. `left_in` / `top_in` leave room for row labels and column titles, `below_in` for the text
    under each row.
    """
    gap_in = 0.08
    panel_height_in = PANEL_WIDTH_IN * aspect
    row_height_in = panel_height_in + below_in + gap_in
    fig_width_in = left_in + num_cols * (PANEL_WIDTH_IN + gap_in) + gap_in
    fig_height_in = top_in + num_rows * row_height_in + gap_in
    fig = Figure(figsize=(fig_width_in, fig_height_in))
    FigureCanvasAgg(fig)  # the figure's own canvas: no global backend is touched
    axes = np.empty((num_rows, num_cols), dtype=object)
    for row in range(num_rows):
        bottom_in = fig_height_in - top_in - gap_in - row * row_height_in - panel_height_in
        for col in range(num_cols):
            left = left_in + gap_in + col * (PANEL_WIDTH_IN + gap_in)
            rect = (
                left / fig_width_in,
                bottom_in / fig_height_in,
                PANEL_WIDTH_IN / fig_width_in,
                panel_height_in / fig_height_in,
            )
            axes[row, col] = fig.add_axes(rect)
    return fig, axes


def _check_truth(truth: FrameAnnotations | None, num_frames: int, size: tuple[int, int] | None) -> None:
    """Raise unless `truth` (if any) describes `num_frames` frames of `size` (None: any size)."""
    if truth is None:
        return
    if len(truth.occlusion) != num_frames:
        raise ValueError(f"truth must describe the clip's N={num_frames} frames, got {len(truth.occlusion)}")
    if size is not None and tuple(truth.size) != tuple(size):
        raise ValueError(
            f"truth must be in pixels of the frames' size {tuple(size)}, got {tuple(truth.size)}: look it up with "
            "Annotations.lookup(..., size=(H, W)) of the frames"
        )


def _draw_part_boxes(ax: Axes, boxes_P4: np.ndarray) -> None:
    """Each part's box (x0, y0, x1, y1, pixel edges; NaN: absent) as a thin rectangle in its PART_COLORS colour."""
    for part, (x0, y0, x1, y1) in zip(PARTS, boxes_P4, strict=True):
        if np.isnan([x0, y0, x1, y1]).any():
            continue
        # imshow puts pixel i's centre at i, so its edges are at i ± 0.5.
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=PART_COLORS[part],
                               linewidth=PART_LINE_WIDTH, label=part))  # fmt: skip


def _show(ax: Axes, image_HW3: np.ndarray) -> None:
    """Draw an RGB image without ticks (the spines stay, so a panel can be highlighted)."""
    ax.imshow(np.clip(image_HW3, 0, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _as_float_rgb(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 or float in [0, 1] -> float64 in [0, 1]."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise ValueError(f"frames must have shape (N, H, W, 3) with N, H, W >= 1, got {frames.shape}")
    if frames.dtype == np.uint8:
        return frames / 255.0
    if not np.issubdtype(frames.dtype, np.floating):
        raise ValueError(f"frames must be uint8 or float in [0, 1], got dtype {frames.dtype}")
    if not (np.isfinite(frames).all() and frames.min() >= 0 and frames.max() <= 1):
        raise ValueError("float frames must be RGB in [0, 1]; pass uint8 frames for 0..255 values")
    return frames.astype(np.float64)


def _upsample_bilinear(map_hw: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an (h, w) map to (height, width), matching `F.interpolate(align_corners=False)`."""
    r0, r1, rw = _interpolation_taps(map_hw.shape[0], height)
    c0, c1, cw = _interpolation_taps(map_hw.shape[1], width)
    top = map_hw[r0][:, c0] * (1 - cw) + map_hw[r0][:, c1] * cw  # (height, width)
    bottom = map_hw[r1][:, c0] * (1 - cw) + map_hw[r1][:, c1] * cw
    return top * (1 - rw[:, None]) + bottom * rw[:, None]


def _interpolation_taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output index: the two input indices around its pixel centre and the weight of the second."""
    centre = (np.arange(size_out) + 0.5) * (size_in / size_out) - 0.5
    centre = np.clip(centre, 0, size_in - 1)
    low = np.floor(centre).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    return low, high, centre - low
