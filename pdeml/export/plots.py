"""PNG pictures: the field (and its error where a truth exists) and the loss history."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .mesh import mesh, plane_slice
from .vtk import truth_function


def figure(nrows: int, ncols: int, figsize):
    """A matplotlib figure and its axes (2-D array) without pyplot: no backend is selected and
    no global state changes, so a notebook's inline plots keep working."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def save(fig, path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def colors(title: str, values) -> dict:
    """Colormap keywords for a panel: an error (prediction - truth) gets a diverging map centred
    on zero, so its sign reads off the colour; anything else viridis."""
    if title != "error":
        return {"cmap": "viridis"}
    m = float(np.nanmax(np.abs(values))) if np.size(values) else 0.0
    m = m if m > 0 else 1.0
    return {"cmap": "RdBu_r", "vmin": -m, "vmax": m}


def _label(title: str) -> str:
    return "error (prediction - truth)" if title == "error" else title


def plot_history(history: list[dict], term_names, path) -> Path:
    """Loss terms (and the error against the truth, and an inverse problem's parameters) over
    the steps; a dotted line where the phase changes (Adam -> L-BFGS), labelled with the phase
    that starts there."""
    error = any(r.get("l2_relative_error") is not None for r in history)
    params = sorted({k for r in history for k in r if k.startswith("param_")})
    panels = 1 + error + bool(params)
    fig, ax = figure(1, panels, (5 * panels, 4))
    steps = [r["step"] for r in history]
    for name in ["loss", *term_names]:
        ax[0, 0].semilogy(
            steps, [r[name] for r in history], label=name, lw=2 if name == "loss" else 1
        )
    ax[0, 0].set(xlabel="step", ylabel="loss", title="loss terms")
    ax[0, 0].legend()
    if error:
        ax[0, 1].semilogy(steps, [r["l2_relative_error"] for r in history], color="k")
        ax[0, 1].set(xlabel="step", ylabel="relative L2 error", title="error vs truth")
    if params:  # an inverse problem's unknowns: where they went, and whether they settled
        a = ax[0, -1]
        for k in params:
            a.plot(steps, [r.get(k, float("nan")) for r in history], label=k[len("param_") :])
        a.set(xlabel="step", ylabel="value", title="parameters")
        a.legend()
    for prev, row in zip(history, history[1:]):
        if row.get("phase") != prev.get("phase"):
            for a in ax.ravel():
                a.axvline(prev["step"], color="0.4", ls=":", lw=1)
                a.text(
                    prev["step"],
                    1,
                    f" {row['phase']}",
                    transform=a.get_xaxis_transform(),
                    va="top",
                    ha="left",
                    fontsize=8,
                    color="0.3",
                )
    for a in ax.ravel():
        a.grid(True, which="both", alpha=0.3)
    return save(fig, path)


def _panels(n):
    fig, ax = figure(1, n, (4.6 * n, 4))
    return fig, ax[0]


def plot_field(backend, path, resolution: int = 128) -> Path:
    """One panel for the first output, one for the truth and one for the error if known."""
    p = backend.problem
    g = p.geometry
    name = p.outputs[0]
    truth_fn = truth_function(p)

    def truth_at(x):
        return None if truth_fn is None else truth_fn(x)

    if g.dim == 1 and p.time is not None:
        (x0,), (x1,) = g.bbox
        t0, t1 = p.time
        X, T = np.meshgrid(
            np.linspace(float(x0), float(x1), resolution),
            np.linspace(t0, t1, resolution),
            indexing="ij",
        )
        xt = np.stack([X.ravel(), T.ravel()], 1)
        grids = [("prediction", backend.predict(xt)[:, 0])]
        truth = truth_at(xt)
        if truth is not None:
            grids += [("truth", truth[:, 0]), ("error", backend.predict(xt)[:, 0] - truth[:, 0])]
        fig, ax = _panels(len(grids))
        for a, (title, v) in zip(ax, grids):
            im = a.pcolormesh(
                T,
                X,
                v.reshape(X.shape),
                shading="auto",
                **colors(title, v),
            )
            a.set(xlabel="t", ylabel="x", title=f"{name}: {_label(title)}")
            fig.colorbar(im, ax=a)
    elif g.dim == 1:
        x = np.linspace(g.bbox[0][0], g.bbox[1][0], resolution)[:, None]
        fig, ax = _panels(1)
        ax[0].plot(x[:, 0], backend.predict(x)[:, 0], label="prediction")
        truth = truth_at(x)
        if truth is not None:
            ax[0].plot(x[:, 0], truth[:, 0], "--", label="truth")
        ax[0].legend()
    else:
        if g.dim == 3:  # the mid-height slice, sampled on its own plane (no 3-D mesh)
            pts, kind, cells, z = plane_slice(g, resolution)
            title_extra = f" ({p.inputs[2]} = {z:.3g})"
        else:
            pts, kind, cells = mesh(g, resolution)
            title_extra = ""
        if kind == "quad":  # the (x0, x1) slice of a high-dimensional domain
            cells, title_extra = (
                np.concatenate([cells[:, [0, 1, 2]], cells[:, [0, 2, 3]]]),
                " (slice)",
            )
        x = pts if p.time is None else np.hstack([pts, np.full((len(pts), 1), p.time[1])])
        if p.time is not None:
            title_extra += f" (t = {p.time[1]:.3g})"
        pred = backend.predict(x)[:, 0]
        grids = [("prediction", pred)]
        truth = truth_at(x)
        if truth is not None:
            grids += [("truth", truth[:, 0]), ("error", pred - truth[:, 0])]
        fig, ax = _panels(len(grids))
        for a, (title, v) in zip(ax, grids):
            im = a.tripcolor(
                pts[:, 0],
                pts[:, 1],
                cells,
                v,
                shading="gouraud",
                **colors(title, v),
            )
            a.set_aspect("equal")
            a.set(
                title=f"{name}: {_label(title)}{title_extra}",
                xlabel=p.inputs[0],
                ylabel=p.inputs[1],
            )
            fig.colorbar(im, ax=a)
    return save(fig, path)


def plot_grid_solve(
    path,
    x: np.ndarray,
    fluid: np.ndarray,
    residuals: dict[str, list[float]],
    tol: float | None = None,
) -> Path:
    """A grid solution (2-D, or the middle slice of the last axis in 3-D; solid cells blank)
    beside the relative residual histories of one or more iterative solvers."""
    fig, ax = _panels(2)
    sliced = x.ndim == 3
    if sliced:
        x, fluid = x[..., x.shape[-1] // 2], fluid[..., fluid.shape[-1] // 2]
    im = ax[0].imshow(np.ma.masked_where(~fluid.astype(bool), x).T, origin="lower", cmap="viridis")
    fig.colorbar(im, ax=ax[0])
    ax[0].set(title="x, middle slice" if sliced else "x")
    for label, hist in residuals.items():
        ax[1].semilogy(range(len(hist)), hist, label=f"{label} ({len(hist) - 1} it.)")
    if tol is not None:
        ax[1].axhline(tol, color="k", ls=":", lw=1)
    ax[1].set(xlabel="iteration", ylabel="||r|| / ||b||", title="convergence")
    ax[1].legend()
    ax[1].grid(True, which="both", alpha=0.3)
    return save(fig, path)
