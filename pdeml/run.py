"""Run a case end to end: train, write metrics/history/checkpoint, export VTK and pictures.

This is the layer the CLI calls; it is also the simplest Python entry point::

    import pdeml.run
    metrics = pdeml.run.train_case("poisson_lshape", "runs/lshape", steps=2000, lr=1e-3)
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from . import registry, rundir, settings
from ._roots import OLD_ROOTS, moved
from ._validate import fail
from .callbacks import HistoryCSV, ProgressBar
from .combine import MConFIG, make_combiner
from .device import resolve_device
from .distributed import World, joined
from .fit import DivergenceError, fit
from .optim import Adam, make_optimizer
from .problem import Case


def builtin_cases() -> dict[str, str]:
    """Case names (over every registered case folder, :func:`pdeml.registry.case_modules`) -> first
    docstring line and the case's options (``--dim 100``). Reads the sources: builds nothing."""
    import ast
    out = {}
    for name, module in registry.case_modules().items():
        spec = importlib.util.find_spec(module)
        tree = ast.parse(Path(spec.origin).read_text())
        doc = ast.get_docstring(tree)
        line = doc.strip().splitlines()[0] if doc else ""
        make = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "make"), None)
        if make is not None:
            args = make.args.args[-len(make.args.defaults):] if make.args.defaults else []
            opts = [f"--{a.arg} {ast.unparse(d)}" for a, d in zip(args, make.args.defaults)]
            opts += [f"--{a.arg} {ast.unparse(d)}" for a, d in zip(make.args.kwonlyargs, make.args.kw_defaults)]
            line += f"  [{' '.join(opts)}]"
        out[name] = line
    return out


def typed_option(flag: str, value, default):
    """``value`` (a command-line string) converted to the type of ``default`` (str if None);
    booleans are true/false/1/0. A bad value is an error that names ``flag``."""
    kind = type(default) if default is not None else str
    try:
        if kind is bool and isinstance(value, str):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        return kind(value)
    except (TypeError, ValueError):
        fail(flag, value, f"is not a valid {kind.__name__}", f"pass e.g. {flag} {default}")


def _apply_options(mod, spec: str, options: dict) -> Case:
    """``mod.make(**options)`` with each value converted to the type of the option's default."""
    import inspect
    make = getattr(mod, "make", None)
    if make is None:
        fail("case options", options, f"were given but case {spec!r} takes none (it defines no make())",
             "drop them, or define `def make(name=default, ...) -> pl.Case` in the case file")
    params = inspect.signature(make).parameters
    kwargs = {}
    for key, value in options.items():
        name = key.replace("-", "_")
        if name not in params:
            fail(f"--{key}", value, f"is not an option of case {spec!r}",
                 f"use one of {['--' + k for k in params]}")
        default = params[name].default
        kwargs[name] = typed_option(f"--{key}", value,
                                    None if default is inspect.Parameter.empty else default)
    case = make(**kwargs)
    return case.replace(options={**case.options, **kwargs})


def _import_file(path: Path):
    name = f"_pdeml_case_{abs(hash(str(path.resolve())))}"
    mod_spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(mod_spec)
    sys.modules[name] = mod
    try:
        mod_spec.loader.exec_module(mod)
    except SyntaxError as e:
        sys.modules.pop(name, None)
        fail("case", str(path), f"has a syntax error at line {e.lineno}: {e.msg}",
             "correct the file (python -m py_compile FILE shows the line)")
    except ImportError as e:                   # `from solvers import PINN`: the old import roots
        sys.modules.pop(name, None)
        if (e.name or "").split(".")[0] not in OLD_ROOTS and "one import root" not in str(e):
            raise
        raise ImportError(f"case={str(path)!r}: {moved(e.name) if e.name else e}") from None
    return mod


def load_case(spec: str, options: dict | None = None) -> tuple[Case, str]:
    """A case from a file path or a built-in name; returns ``(case, source)``. A spec is a file
    when it ends in ``.py`` or names an existing file (a directory never is, so a run directory
    named like its case does not shadow the case). ``options`` are passed to the case file's
    ``make(**options)`` (``pdeml train CASE --dim 1000``); without them the module-level ``case``
    is used."""
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            fail("case", spec, "is not a file", "pass the path of a case file or a built-in name "
                 "(`pdeml cases` lists them)", FileNotFoundError)
        mod = _import_file(path)
        source = str(path.resolve())
    else:
        modules = registry.case_modules()
        if spec not in modules:
            fail("case", spec, "is neither a file nor a built-in case", f"use one of {sorted(modules)} or a path")
        mod = importlib.import_module(modules[spec])
        source = spec
    case = getattr(mod, "case", None)
    if not isinstance(case, Case):
        fail("case", spec, "defines no module-level `case = pl.Case(...)`", "add one to the file")
    if options:
        case = _apply_options(mod, spec, options)
    return case, source


def build(case: Case, *, seed: int = 0, device="auto"):
    """The backend of ``case``'s method for its problem, on ``device``."""
    return case.method.build(case.problem, seed=seed, dtype=case.torch_dtype, device=resolve_device(device))


#: the overrides of the case's own fields, which every case has; a method adds its own
#: (:meth:`pdeml.backend.AbstractMethod.cli_options`: ``derivatives``, ``sampler``, ``compile``,
#: ``constraint``, ``data``, ...)
CASE_OVERRIDES = ("optimizer", "lr", "combiner", "steps", "lbfgs_steps", "checkpoint_every",
                  "checkpoint_minutes")


def apply_overrides(case: Case, overrides: dict) -> Case:
    """``case`` with command-line overrides landed on the fields they name: ``steps``,
    ``lbfgs_steps``, ``optimizer`` (a name keeps the case's learning rate), ``lr`` (the
    optimizer's), ``combiner`` ("mconfig" also switches Adam to SGD, which M-ConFIG needs), and
    the options that the case's method owns (:func:`pdeml.registry.apply_option`; one marked
    ``first``, such as ``constraint``, is applied before the others so that they land on the
    method it makes). An override that has no field to land on is an error, never silently
    dropped."""
    owned = registry.method_options()
    unknown = set(overrides) - set(CASE_OVERRIDES) - set(owned)
    if unknown:
        fail("overrides", sorted(unknown), "are not overrides", f"use some of {[*CASE_OVERRIDES, *owned]}")
    o = {k: v for k, v in overrides.items() if v is not None}
    first = [k for k in o if k in owned and any(opt.first for _, opt in owned[k])]
    for k in first:
        case = registry.apply_option(case, k, o[k])
    if "optimizer" in o:
        case = case.replace(optimizer=make_optimizer(o["optimizer"], case.optimizer))
    if "lr" in o:
        if "lr" not in settings.fields(case.optimizer):
            fail("--lr", o["lr"], f"does not apply to {case.optimizer!r}, which has no learning rate",
                 "drop --lr (ENGD's line search picks its step), or pass --optimizer adam")
        case = case.replace(optimizer=settings.replace(case.optimizer, lr=o["lr"]))
    if "combiner" in o:
        combiner = make_combiner(o["combiner"])
        changes = {"combiner": combiner}
        if isinstance(combiner, MConFIG) and "optimizer" not in o and isinstance(case.optimizer, Adam):
            changes["optimizer"] = make_optimizer("sgd", case.optimizer)
        case = case.replace(**changes)
    plain = {k: o[k] for k in ("steps", "lbfgs_steps", "checkpoint_every", "checkpoint_minutes") if k in o}
    if plain:
        case = case.replace(**plain)
    for k in o:
        if k in owned and k not in first:
            case = registry.apply_option(case, k, o[k])
    return case


def _plain(overrides: dict) -> dict:
    """Overrides as run.json records them: values as given, objects by their readable fields."""
    return {k: settings.describe(v) for k, v in overrides.items() if v is not None}


def train_case(case, out, *, seed=0, device="auto", resume=False, progress=True, export=True,
               callbacks=(), options=None, snapshots: int = 0, threads: int | None = None,
               world: World | None = None, **overrides) -> dict:
    """Train a case (object, path or name) and write the run directory ``out``; returns metrics.

    ``overrides`` (see :data:`OVERRIDES` and :func:`apply_overrides`) land on the case's fields;
    ``options`` go to the case's ``make()``; ``snapshots`` > 0 saves the collocation points over
    the residual every that many steps (``out/snapshots``, see :mod:`pdeml.export.points`);
    ``threads`` is recorded in run.json (the CLI sets torch's thread count from it).
    ``world`` (:class:`pdeml.distributed.World`, read by the CLI from torchrun's environment):
    this process's rank in a multi-process job. Every rank trains on its share of the points;
    rank 0 alone writes the run directory, prints progress and exports.
    """
    world = world if world is not None else World()
    source = None
    options = dict(options or {})
    if snapshots is not None and (isinstance(snapshots, bool) or not isinstance(snapshots, int) or snapshots < 0):
        fail("--snapshots", snapshots, "must be a non-negative integer", "pass 0 (none) or e.g. 500")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        fail("--seed", seed, "must be a non-negative integer", "pass e.g. --seed 0")
    if isinstance(case, str):
        case, source = load_case(case, options)
    elif options:
        fail("options", options, "apply to case files and names only", "call make(...) yourself")
    case = apply_overrides(case, overrides)
    out = rundir.prepare(out) if world.main else Path(out)
    with joined(world, resolve_device(device)) as dev, rundir.lock(out) if world.main else contextlib.nullcontext():
        backend = build(case, seed=seed, device=dev)
        dev = backend.device
        run_info = {"source": source, "method": registry.method_name(case.method), "seed": seed, "device": str(dev), "threads": threads,
                    "overrides": _plain(overrides), "case_options": options, "dtype": case.dtype,
                    "outputs": list(case.problem.outputs), "terms": backend.term_names,
                    "options": case.options, "case": settings.describe(case),
                    "resolved": backend.resolved()}
        if world.active:
            run_info["world_size"] = world.size
        saved = rundir.checkpoint_for_resume(out, resume, run_info)
        if world.main:
            (out / "run.json").write_text(json.dumps(run_info, indent=2))
        truth = backend.reference(np.random.default_rng(seed + 12345))
        callbacks = list(callbacks) if world.main else []
        if snapshots and world.main:
            from .export.points import PointSnapshots
            callbacks.append(PointSnapshots(backend, out / "snapshots", snapshots))
        try:
            result = fit(backend, case.phases(), weights=case.weights, seed=seed,
                         checkpoint=out / "checkpoint.pt", checkpoint_every=case.checkpoint_every,
                         checkpoint_minutes=case.checkpoint_minutes, resume=saved,
                         truth=truth, eval_every=case.eval_every, world=world,
                         callbacks=[ProgressBar(progress), HistoryCSV(out / "history.csv"), *callbacks]
                         if world.main else [])
        except DivergenceError as e:
            if world.main:
                rundir.write_json(out / "metrics.json", {"status": "diverged", "message": str(e), "device": str(dev)})
            raise
        metrics = {
            "status": result.status, "steps": result.steps, "wall_time_s": round(result.wall_time_s, 3),
            "device": str(dev), "seed": seed, "dtype": case.dtype,
            "l2_relative_error": result.l2_relative_error,
            "final_losses": result.losses, "parameters": backend.parameter_values(),
        }
        if result.message:
            metrics["message"] = result.message
        if backend.compile_s:                         # torch.compile's time, in this process
            metrics["compile_s"] = round(backend.compile_s, 2)
        if world.active:
            metrics["world_size"] = world.size
        if not world.main:
            return metrics
        rundir.write_json(out / "metrics.json", metrics)      # the numbers first, pictures after
        if export:
            metrics["files"] = [str(p.relative_to(out)) for p in rundir.guard_disk(
                out, lambda: export_backend(backend, out, case.export_resolution))]
            rundir.write_json(out / "metrics.json", metrics)
    return metrics


def make_data(case, out, *, samples: int, test: int | None = None, seed: int = 0, batch: int = 32,
              device="auto", progress: bool = True, options=None) -> Path:
    """Generate the dataset of a case whose problem is a family (``pdeml data CASE``)."""
    from .family import AbstractFamily
    if isinstance(case, str):
        case, _ = load_case(case, dict(options or {}))
    if not isinstance(case.problem, AbstractFamily):
        fail("case", type(case.problem).__name__, "has one problem, not a family to draw data from",
             "use an operator case (pdeml cases lists them), or train it directly")
    if Path(out).is_dir():
        fail("--out", str(out), "is a directory", "pass a file path such as data/nse.h5", IsADirectoryError)
    return case.problem.write(out, samples, test=test, seed=seed, batch=batch, device=resolve_device(device),
                              progress=progress)


def export_backend(backend, out, resolution: int, sample: int | None = None) -> list[Path]:
    """The backend's own files (:meth:`pdeml.backend.AbstractBackend.export`) and ``loss.png``."""
    from .export import plot_history
    out = Path(out)
    files = backend.export(out, resolution, sample=sample)
    saved = out / "checkpoint.pt"
    if saved.exists():
        hist = json.loads(ckpt.load(saved)["history"])
        if hist:
            files.append(plot_history(hist, backend.term_names, out / "loss.png"))
    return files


def load_run(out, device="auto"):
    """``(case, backend)`` of a run directory written by ``pdeml train``, with its trained weights."""
    out = Path(out)
    info = rundir.read_info(out)
    if info.get("source") is None:
        fail("DIR", str(out), "was trained from a Python Case object, not a file or name",
             "call pdeml.run.export_backend from Python instead")
    case, _ = load_case(info["source"], info.get("case_options") or None)
    changes = info.get("overrides", {})
    objects = sorted(k for k, v in changes.items() if isinstance(v, dict))
    if objects:
        fail("DIR", str(out), f"was trained with object overrides {objects} from Python",
             "rebuild the case in Python and call pdeml.run.export_backend")
    case = apply_overrides(case, changes)
    backend = build(case, seed=info.get("seed", 0), device=device)
    backend.load_state_dict(ckpt.load(out / "checkpoint.pt", map_location=backend.device)["model"])
    return case, backend


def export_run(out, resolution: int | None = None, device="auto", sample: int | None = None) -> list[Path]:
    """Re-export a finished run directory at another resolution."""
    if resolution is not None and (isinstance(resolution, bool) or not isinstance(resolution, int)
                                   or resolution < 2):
        fail("--resolution", resolution, "must be an integer >= 2", "pass e.g. --resolution 128")
    case, backend = load_run(out, device)
    return export_backend(backend, Path(out), resolution or case.export_resolution, sample)


def condition_report(target, options=None, *, seed: int = 0, device="auto", points: int | None = None,
                     max_parameters: int = 5000) -> dict:
    """κ of the linearized PDE operator (:func:`pdeml.gauss_newton.conditioning`) for a case's
    model at initialization, or for a trained run directory; on the case's collocation points
    (``points`` PDE points instead, if given)."""
    from .gauss_newton import conditioning
    from .sampling import to_torch
    if (Path(target) / "run.json").is_file():
        case, backend = load_run(target, device)
    else:
        case, _ = load_case(target, options)
        backend = build(case, seed=seed, device=device)
    n_params = sum(p.numel() for p in backend.parameters() if p.requires_grad)
    if n_params > max_parameters:
        fail("case", target, f"has {n_params} parameters, too many for the dense P x P spectrum",
             f"use a smaller model, or pass max_parameters > {n_params} from Python")
    sampler = None
    if points is not None:
        sampler = settings.replace(backend.sampler, n_domain=points)
    batch = backend.batches(sampler, np.random.default_rng(seed)).current()
    rep = conditioning(backend, to_torch(batch, backend.dtype, backend.device))
    ev = rep.pop("eigenvalues")
    return {**rep, "parameters": n_params, "rank": int(len(ev)), "eigenvalue_max": float(ev.max()),
            "eigenvalue_min": float(ev.min()), "points": len(batch["domain"]["x"])}
