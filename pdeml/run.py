"""Run a case end to end: train, write metrics/history/checkpoint, export VTK and pictures.

This is the layer the CLI calls; it is also the simplest Python entry point::

    import pdeml.run
    metrics = pdeml.run.train_case("poisson_lshape", "runs/lshape", steps=2000, lr=1e-3)
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from . import loading, registry, rundir, settings
from ._validate import fail
from .callbacks import HistoryCSV, ProgressBar, bars
from .device import resolve_device
from .distributed import World, joined
from .fit import DivergenceError, fit
from .loading import builtin_cases, load_case, typed_option  # noqa: F401  (pdeml.run's API)
from .overrides import CASE_OVERRIDES, apply_overrides  # noqa: F401  (pdeml.run's API)
from .problem import Case


def build(case: Case, *, seed: int = 0, device="auto"):
    """The backend of ``case``'s method for its problem, on ``device``."""
    return case.method.build(
        case.problem, seed=seed, dtype=case.torch_dtype, device=resolve_device(device)
    )


def _plain(overrides: dict) -> dict:
    """Overrides as run.json records them: values as given, objects by their readable fields."""
    return {k: settings.describe(v) for k, v in overrides.items() if v is not None}


def _check_run_args(seed, snapshots) -> None:
    if snapshots is not None and (
        isinstance(snapshots, bool) or not isinstance(snapshots, int) or snapshots < 0
    ):
        fail(
            "--snapshots", snapshots, "must be a non-negative integer", "pass 0 (none) or e.g. 500"
        )
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        fail("--seed", seed, "must be a non-negative integer", "pass e.g. --seed 0")


def _case_and_source(case, options: dict):
    if isinstance(case, str):
        return load_case(case, options)
    if options:
        fail("options", options, "apply to case files and names only", "call make(...) yourself")
    return case, None


def train_case(
    case,
    out,
    *,
    seed=0,
    device="auto",
    resume=False,
    progress=True,
    export=True,
    callbacks=(),
    options=None,
    snapshots: int = 0,
    threads: int | None = None,
    world: World | None = None,
    **overrides,
) -> dict:
    """Train a case (object, path or name) and write the run directory ``out``; returns metrics
    (``pdeml train``; :func:`execute` does the work).

    ``overrides`` (:data:`CASE_OVERRIDES`, and the options the case's method owns; see
    :func:`pdeml.overrides.apply_overrides`) land on the case's fields; ``options`` go to the
    case's ``make()``; ``snapshots`` > 0 saves the collocation points over the residual every
    that many steps (``out/snapshots``, see :mod:`pdeml.export.points`); ``threads`` is recorded
    in run.json (the CLI sets torch's thread count from it). ``world``
    (:class:`pdeml.distributed.World`, read by the CLI from torchrun's environment): this
    process's rank in a multi-process job. Every rank trains on its share of the points; rank 0
    alone writes the run directory, prints progress and exports.
    """
    _check_run_args(seed, snapshots)
    options = dict(options or {})
    case, source = _case_and_source(case, options)
    case = apply_overrides(case, overrides)
    return execute(
        case,
        out,
        trains=True,
        source=source,
        seed=seed,
        device=device,
        resume=resume,
        progress=progress,
        export=export,
        callbacks=callbacks,
        snapshots=snapshots,
        threads=threads,
        world=world,
        record={"overrides": _plain(overrides), "case_options": options},
    )


def solve_case(
    case,
    out,
    *,
    method: str | None = None,
    points: int = 1000,
    resolution: int | None = None,
    seed: int = 0,
    device="auto",
    export: bool = True,
    options=None,
    threads: int | None = None,
    world: World | None = None,
    **overrides,
) -> dict:
    """Solve a case whose method does not train (``pdeml solve``): walk-on-spheres, a reference
    solver. ``method`` names a registered method that replaces the case's, in float64 (``"wos"``:
    walk-on-spheres for a case whose PDE is structured, ``pl.pde.Poisson``); ``overrides`` are
    that method's options (``walks``, ``epsilon``). The error is measured on at most ``points``
    of the case's truth; ``resolution`` is the export mesh's (default: the case's)."""
    from ._validate import positive_int

    _check_run_args(seed, 0)
    points = positive_int("--points", points)
    if resolution is not None:
        resolution = positive_int("--resolution", resolution)
    options = dict(options or {})
    case, source = _case_and_source(case, options)
    if method is not None:
        known = registry.methods()
        if method not in known:
            fail("--method", method, "is not a registered method", f"use one of {sorted(known)}")
        # a case's dtype was chosen for its own method (float32 for a PINN's training); a reference
        # solve that replaces it runs in float64
        case = case.replace(method=known[method](), dtype="float64")
    case = apply_overrides(case, overrides)
    if resolution is not None:
        case = case.replace(export_resolution=resolution)
    return execute(
        case,
        out,
        trains=False,
        source=source,
        seed=seed,
        device=device,
        export=export,
        threads=threads,
        world=world,
        points=points,
        record={"overrides": _plain({"method": method, **overrides}), "case_options": options},
    )


def execute(
    case: Case,
    out,
    *,
    trains: bool | None = None,
    source: str | None = None,
    seed: int = 0,
    device="auto",
    resume: bool = False,
    progress: bool = True,
    export: bool = True,
    callbacks=(),
    snapshots: int = 0,
    threads: int | None = None,
    world: World | None = None,
    points: int = 1000,
    record: dict | None = None,
) -> dict:
    """The one run path: every command that writes a run directory ends here.

    Prepares and locks ``out`` (rank 0), builds the case's method, checks a resume and that the
    method does what the command asks (``trains``: True for ``pdeml train``, False for ``pdeml
    solve``) *before* anything is written, writes run.json atomically, then trains the backend
    with :func:`pdeml.fit` if it is trainable or calls its ``solve(truth)`` if not (the truth:
    at most ``points`` of the case's reference), writes metrics.json, and exports under the
    full-disk guard. ``record``: further run.json fields (the overrides as given)."""
    from .backend import AbstractTrainable

    world = world if world is not None else World()
    out = rundir.prepare(out) if world.main else Path(out)
    with (
        joined(world, resolve_device(device)) as dev,
        rundir.lock(out) if world.main else contextlib.nullcontext(),
        bars(progress),  # --no-progress: the method's own long loops log lines, no bars
    ):
        if resume:
            case = _keep_recorded_choices(case, out)
        backend = build(case, seed=seed, device=dev)
        dev = backend.device
        trainable = isinstance(backend, AbstractTrainable)
        if trains is not None and trainable != trains:
            name = type(case.method).__name__
            fail(
                "case",
                source or name,
                f"uses {name}, which {'does not train' if trains else 'trains'}",
                "run `pdeml solve CASE` (or pass --method NAME there)"
                if trains
                else "run `pdeml train CASE`, or solve it by a method that does not train: `pdeml "
                "solve CASE "
                "--method wos` (Poisson-type cases)",
            )
        info = {
            "source": source,
            "source_sha256": loading.source_hash(source),
            "method": registry.method_name(case.method),
            "seed": seed,
            "device": str(dev),
            "threads": threads,
            **(record or {}),
            "dtype": case.dtype,
            "outputs": list(case.problem.outputs),
            "terms": backend.term_names if trainable else [],
            "options": case.options,
            "case": settings.describe(case),
            "resolved": backend.resolved(),
        }
        if world.active:
            info["world_size"] = world.size
        saved = rundir.checkpoint_for_resume(out, resume, info) if trainable else False
        if world.main:
            rundir.write_json(out / "run.json", info)
        if trainable:
            metrics = _train(
                backend,
                case,
                out,
                saved=saved,
                seed=seed,
                progress=progress,
                callbacks=callbacks,
                snapshots=snapshots,
                world=world,
            )
        else:
            metrics = _solve(backend, case, seed=seed, points=points)
        metrics = {**metrics, **({"world_size": world.size} if world.active else {})}
        if trainable:  # the choices made on this machine (a PINN's per-product libraries)
            metrics.update(backend.choices())
        if not world.main and trainable:
            return metrics
        if world.main:
            rundir.write_json(out / "metrics.json", metrics)  # the numbers first, pictures after
        if export:
            # a distributed solve's export walks on every rank (the estimates are reduced): the
            # other ranks write into a directory that is thrown away
            scratch = contextlib.nullcontext(out) if world.main else tempfile.TemporaryDirectory()
            with scratch as where:
                files = rundir.guard_disk(
                    Path(where), lambda: export_backend(backend, where, case.export_resolution)
                )
            if world.main:
                metrics["files"] = [str(Path(p).relative_to(out)) for p in files]
                metrics.update(backend.export_info)
                rundir.write_json(out / "metrics.json", metrics)
    return metrics


def _keep_recorded_choices(case: Case, out: Path) -> Case:
    """On ``--resume``, the machine-dependent choice the run recorded (``resolved.gemm``: who
    runs compiled CPU products) replaces ``"auto"``, so a run resumed on another machine does
    the arithmetic it started with. An explicit ``--gemm`` still wins."""
    if not (Path(out) / "run.json").is_file():
        return case
    recorded = (rundir.read_info(Path(out)).get("resolved") or {}).get("gemm")
    if recorded in ("mkl", "onednn") and getattr(case.method, "gemm", None) == "auto":
        return case.replace(method=settings.replace(case.method, gemm=recorded))
    return case


def _train(
    backend,
    case: Case,
    out: Path,
    *,
    saved: bool,
    seed: int,
    progress: bool,
    callbacks,
    snapshots: int,
    world: World,
) -> dict:
    """``fit`` with the run directory's checkpoint, history and progress; the training metrics."""
    dev = backend.device
    truth = backend.reference(np.random.default_rng(seed + 12345))
    callbacks = list(callbacks) if world.main else []
    if snapshots and world.main:
        from .export.points import PointSnapshots

        callbacks.append(PointSnapshots(backend, out / "snapshots", snapshots))
    try:
        result = fit(
            backend,
            case.phases,
            weights=case.weights,
            seed=seed,
            checkpoint=out / "checkpoint.pt",
            checkpoint_every=case.checkpoint_every,
            checkpoint_minutes=case.checkpoint_minutes,
            resume=saved,
            truth=truth,
            eval_every=case.eval_every,
            world=world,
            callbacks=[ProgressBar(progress), HistoryCSV(out / "history.csv"), *callbacks]
            if world.main
            else [],
        )
    except DivergenceError as e:
        if world.main:
            rundir.write_json(
                out / "metrics.json", {"status": "diverged", "message": str(e), "device": str(dev)}
            )
        raise
    metrics = {
        "status": result.status,
        "steps": result.steps,
        "wall_time_s": round(result.wall_time_s, 3),
        "device": str(dev),
        "seed": seed,
        "dtype": case.dtype,
        "l2_relative_error": result.l2_relative_error,
        "final_losses": result.losses,
        "parameters": backend.parameter_values(),
    }
    if result.message:
        metrics["message"] = result.message
    if backend.compile_s:  # torch.compile's time, in this process
        metrics["compile_s"] = round(backend.compile_s, 2)
    return metrics


def _solve(backend, case: Case, *, seed: int, points: int) -> dict:
    """A backend that does not train: its ``solve`` on at most ``points`` of the case's truth."""
    rng = np.random.default_rng(seed + 12345)
    truth = case.problem.truth(points, rng)
    if truth is not None and len(truth[0]) > points:
        keep = np.sort(rng.choice(len(truth[0]), size=points, replace=False))
        truth = (truth[0][keep], truth[1][keep])
    return {"device": str(backend.device), "seed": seed, **backend.solve(truth)}


def make_data(
    case,
    out,
    *,
    samples: int,
    test: int | None = None,
    seed: int = 0,
    batch: int = 32,
    device="auto",
    progress: bool = True,
    options=None,
    overwrite: bool = False,
) -> Path:
    """Generate the dataset of a case whose problem is a family (``pdeml data CASE``). An
    existing ``out`` is refused before any work unless ``overwrite``."""
    from .family import AbstractFamily

    try:
        exists = Path(out).is_file()
        Path(out).is_dir()
    except OSError as e:  # a name too long for the file system
        fail(
            "--out",
            str(out),
            f"cannot be used as a file name ({e.strerror})",
            "pass a path whose file name is under 255 characters",
            OSError,
        )
    if exists and not overwrite:
        fail(
            "--out",
            str(out),
            "exists (a dataset may have taken hours to generate)",
            "pass --overwrite to replace it, or another --out",
            FileExistsError,
        )

    if isinstance(case, str):
        case, _ = load_case(case, dict(options or {}))
    if not isinstance(case.problem, AbstractFamily):
        fail(
            "case",
            type(case.problem).__name__,
            "has one problem, not a family to draw data from",
            "use an operator case (pdeml cases lists them), or train it directly",
        )
    if Path(out).is_dir():
        fail(
            "--out",
            str(out),
            "is a directory",
            "pass a file path such as data/nse.h5",
            IsADirectoryError,
        )
    tmp = Path(out).with_name(Path(out).name + ".tmp")
    with contextlib.suppress(OSError):  # left by a run that was killed (SIGKILL is not caught)
        tmp.unlink(missing_ok=True)
    return case.problem.write(
        out,
        samples,
        test=test,
        seed=seed,
        batch=batch,
        device=resolve_device(device),
        progress=progress,
    )


def export_backend(
    backend, out, resolution: int, sample: int | None = None, run=None
) -> list[Path]:
    """The backend's own files (:meth:`pdeml.backend.AbstractBackend.export`) and ``loss.png``
    (from the history in ``run``'s checkpoint, default ``out``'s) into ``out``."""
    from .export import plot_history

    out = Path(out)
    files = backend.export(out, resolution, sample=sample)
    saved = Path(run if run is not None else out) / "checkpoint.pt"
    if saved.exists():
        hist = json.loads(ckpt.load(saved)["history"])
        if hist:
            files.append(plot_history(hist, backend.term_names, out / "loss.png"))
    return files


def load_run(out, device="auto", case_file=None):
    """``(case, backend)`` of a run directory written by ``pdeml train``, with its trained
    weights. Imports no code the directory names: a built-in case loads by name, a case file
    only when the caller names it (``case_file``, ``--case FILE``; checked against the sha256
    run.json recorded), see :func:`pdeml.loading.run_case`."""
    out = Path(out)
    info = rundir.read_info(out)
    case, _ = loading.run_case(out, info, case_file, info.get("case_options") or None)
    changes = info.get("overrides", {})
    objects = sorted(k for k, v in changes.items() if isinstance(v, dict))
    if objects:
        fail(
            "DIR",
            str(out),
            f"was trained with object overrides {objects} from Python",
            "rebuild the case in Python and call pdeml.run.export_backend",
        )
    case = apply_overrides(case, changes)
    backend = build(case, seed=info.get("seed", 0), device=device)
    backend.load_state_dict(ckpt.load(out / "checkpoint.pt", map_location=backend.device)["model"])
    return case, backend


def export_run(
    out,
    resolution: int | None = None,
    device="auto",
    sample: int | None = None,
    case_file=None,
    *,
    to=None,
    overwrite: bool = False,
) -> list[Path]:
    """Re-export a finished run directory (at another resolution, or another test sample) into
    ``to`` (default: the run directory). Files of an earlier export there are not replaced
    unless ``overwrite``: the check comes before any work."""
    if resolution is not None and (
        isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2
    ):
        fail("--resolution", resolution, "must be an integer >= 2", "pass e.g. --resolution 128")
    target = Path(to) if to is not None else Path(out)
    if not overwrite:
        _refuse_overwrite(Path(out), target)
    case, backend = load_run(out, device, case_file)
    _say_volume_budget(backend, resolution)
    with rundir.session(target) if to is not None else contextlib.nullcontext(target):
        return export_backend(
            backend, target, resolution or case.export_resolution, sample, run=Path(out)
        )


def _say_volume_budget(backend, resolution: int | None) -> None:
    """Warn when an asked ``--resolution`` is more than a 3-D volume export writes."""
    from .export.vtk import VOLUME_POINTS, volume_resolution

    geometry = getattr(getattr(backend, "problem", None), "geometry", None)
    if resolution is None or getattr(geometry, "dim", 0) != 3:
        return
    if volume_resolution(resolution) < resolution:
        warnings.warn(
            f"--resolution {resolution}: the 3-D volume (solution.vtu) is written at "
            f"{volume_resolution(resolution)} voxels a side, the most within the export's budget "
            f"of {VOLUME_POINTS} points (pdeml.export.vtk.VOLUME_POINTS); field.png, the "
            f"mid-plane slice, is drawn at {min(resolution, 200)}.",
            stacklevel=3,
        )


def _refuse_overwrite(run: Path, target: Path) -> None:
    """Fail if ``target`` holds files of an export (those the run's metrics.json lists, and the
    pictures every export draws)."""
    try:
        recorded = json.loads((run / "metrics.json").read_text()).get("files", [])
    except (OSError, ValueError):
        recorded = []
    there = [f for f in [*recorded, "field.png", "loss.png"] if (target / f).exists()]
    if there:
        fail(
            "--out" if target != run else "DIR",
            str(target),
            f"holds an export already ({', '.join(sorted(set(there))[:4])}...)",
            "pass --out NEW_DIR to write this export elsewhere, or --overwrite to replace it",
            FileExistsError,
        )


def condition_report(
    target,
    options=None,
    *,
    seed: int = 0,
    device="auto",
    points: int | None = None,
    max_parameters: int = 5000,
    case_file=None,
) -> dict:
    """κ of the linearized PDE operator (:func:`pdeml.gauss_newton.conditioning`) for a case's
    model at initialization, or for a trained run directory; on the case's collocation points
    (``points`` PDE points instead, if given)."""
    from .gauss_newton import conditioning
    from .sampling import to_torch

    if (Path(target) / "run.json").is_file():
        case, backend = load_run(target, device, case_file)
    else:
        case, _ = load_case(target, options)
        backend = build(case, seed=seed, device=device)
    n_params = sum(p.numel() for p in backend.parameters() if p.requires_grad)
    if n_params > max_parameters:
        fail(
            "case",
            target,
            f"has {n_params} parameters, too many for the dense P x P spectrum",
            f"use a smaller model, or pass max_parameters > {n_params} from Python",
        )
    sampler = None
    if points is not None:
        sampler = settings.replace(backend.sampler, n_domain=points)
    batch = backend.batches(sampler, np.random.default_rng(seed)).current()
    rep = conditioning(backend, to_torch(batch, backend.dtype, backend.device))
    ev = rep.pop("eigenvalues")
    return {
        **rep,
        "parameters": n_params,
        "rank": int(len(ev)),
        "eigenvalue_max": float(ev.max()),
        "eigenvalue_min": float(ev.min()),
        "points": len(batch["domain"]["x"]),
    }
