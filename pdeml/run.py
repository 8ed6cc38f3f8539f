"""Run a case end to end: train, write metrics/history/checkpoint, export VTK and pictures.

This is the layer the CLI calls; it is also the simplest Python entry point::

    import pdeml.run
    metrics = pdeml.run.train_case("poisson_lshape", "runs/lshape", steps=2000)
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import pkgutil
import sys
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from ._validate import fail
from .callbacks import HistoryCSV, ProgressBar
from .combine import MConFIG, make_combiner
from .device import resolve_device
from .fit import DivergenceError, fit
from .nn import MLP
from .optim import LBFGS, make_optimizer
from .problem import Case


def builtin_cases() -> dict[str, str]:
    """Built-in case names -> first docstring line and the case's options (``--dim 100``)."""
    import ast

    import cases
    out = {}
    for m in pkgutil.iter_modules(cases.__path__):   # read the source; don't build references
        if not m.name.startswith("_"):
            tree = ast.parse(Path(m.module_finder.path, f"{m.name}.py").read_text())
            doc = ast.get_docstring(tree)
            line = doc.strip().splitlines()[0] if doc else ""
            make = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "make"), None)
            if make is not None:
                args = make.args.args[-len(make.args.defaults):] if make.args.defaults else []
                opts = [f"--{a.arg} {ast.unparse(d)}" for a, d in zip(args, make.args.defaults)]
                opts += [f"--{a.arg} {ast.unparse(d)}" for a, d in zip(make.args.kwonlyargs, make.args.kw_defaults)]
                line += f"  [{' '.join(opts)}]"
            out[m.name] = line
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


def load_case(spec: str, options: dict | None = None) -> tuple[Case, str]:
    """A case from a file path or a built-in name; returns ``(case, source)``. ``options`` are
    passed to the case file's ``make(**options)`` (``pdeml train CASE --dim 1000``); without
    them the module-level ``case`` is used."""
    path = Path(spec)
    if spec.endswith(".py") or path.exists():
        if not path.is_file():
            fail("case", spec, "is not a file", "pass the path of a case file or a built-in name "
                 "(`pdeml cases` lists them)", FileNotFoundError)
        name = f"_pdeml_case_{abs(hash(str(path.resolve())))}"
        mod_spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = mod
        mod_spec.loader.exec_module(mod)
        source = str(path.resolve())
    else:
        names = sorted(builtin_cases())
        if spec not in names:
            fail("case", spec, "is neither a file nor a built-in case", f"use one of {names} or a path")
        mod = importlib.import_module(f"cases.{spec}")
        source = spec
    case = getattr(mod, "case", None)
    if not isinstance(case, Case):
        fail("case", spec, "defines no module-level `case = pl.Case(...)`", "add one to the file")
    if options:
        case = _apply_options(mod, spec, options)
    return case, source


def build(case: Case, *, seed: int = 0, device="auto"):
    """The backend for ``case`` on ``device`` (the PINN; more backends join through registries)."""
    from solvers import PINN
    dev = resolve_device(device)
    model = case.model if case.model is not None else MLP(width=50, depth=4)
    backend = PINN(case.problem, model, estimator=case.estimator, hard_dirichlet=case.hard_dirichlet,
                   transform=case.transform, seed=seed, dtype=case.torch_dtype,
                   compile_losses=case.compile)
    return backend.to(dev)


def default_sampler(case: Case):
    """The case's sampler: an object, a registry name ("r3", "sobol", ...) built from the case's
    point counts, or by default ``Uniform``."""
    from samplers import REGISTRY, Uniform
    if isinstance(case.sampler, str):
        if case.sampler not in REGISTRY:
            fail("sampler", case.sampler, "is not a sampler", f"use one of {sorted(REGISTRY)}")
        return REGISTRY[case.sampler](n_domain=case.n_domain, n_boundary=case.n_boundary,
                                      n_initial=case.n_initial, every=case.resample_every)
    if case.sampler is not None:
        return case.sampler
    return Uniform(case.n_domain, case.n_boundary, case.n_initial, every=case.resample_every,
                   method=case.sampling)


def train_case(case, out, *, steps=None, lr=None, lbfgs_steps=None, seed=0, device="auto",
               resume=False, progress=True, export=True, callbacks=(), options=None,
               derivatives=None, sampler=None, combiner=None, optimizer=None,
               snapshots: int = 0, compile=None) -> dict:
    """Train a case (object, path or name) and write the run directory ``out``; returns metrics.
    ``options`` go to the case's ``make()``; ``derivatives`` is an estimator spec ("stde:16");
    ``snapshots`` > 0 saves the collocation points over the residual every that many steps
    (``out/snapshots``, see :mod:`pdeml.export.points`); ``compile`` overrides ``Case.compile``."""
    source = None
    options = dict(options or {})
    if isinstance(case, str):
        case, source = load_case(case, options)
    elif options:
        fail("options", options, "apply to case files and names only", "call make(...) yourself")
    if derivatives is not None:
        from .derivatives import parse
        parse(derivatives)                                   # validate now, clearly
    changes = {k: v for k, v in {"steps": steps, "lr": lr, "lbfgs_steps": lbfgs_steps,
                                 "estimator": derivatives, "sampler": sampler,
                                 "combiner": combiner, "optimizer": optimizer,
                                 "compile": compile}.items() if v is not None}
    case = case.replace(**changes) if changes else case
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    backend = build(case, seed=seed, device=device)
    dev = backend.center.device
    run_info = {"source": source, "seed": seed, "device": str(dev), "overrides": changes,
                "case_options": options,
                "dtype": case.dtype, "outputs": list(case.problem.outputs),
                "terms": backend.term_names, "options": case.options}
    (out / "run.json").write_text(json.dumps(run_info, indent=2))
    truth = case.problem.truth(4096, np.random.default_rng(seed + 12345))
    status = "finished"
    points = default_sampler(case)
    callbacks = list(callbacks)
    if snapshots:
        from .export.points import PointSnapshots
        callbacks.append(PointSnapshots(backend, points, out / "snapshots", snapshots))
    combiner = make_combiner(case.combiner, case.weights)
    # M-ConFIG keeps its own moments: plain SGD unless the case names an optimizer
    opt_spec = case.optimizer if case.optimizer is not None else ("sgd" if isinstance(combiner, MConFIG) else None)
    try:
        result = fit(backend, steps=case.steps, sampler=points,
                     optimizer=make_optimizer(opt_spec, case.lr, case.lr_decay, case.lr_decay_every),
                     lbfgs=LBFGS(case.lbfgs_steps) if case.lbfgs_steps else None,
                     combiner=combiner, seed=seed,
                     checkpoint=out / "checkpoint.pt", checkpoint_every=case.checkpoint_every,
                     resume=resume, truth=truth, eval_every=case.eval_every,
                     callbacks=[ProgressBar(progress), HistoryCSV(out / "history.csv"), *callbacks])
    except DivergenceError as e:
        _write_metrics(out, {"status": "diverged", "message": str(e), "device": str(dev)})
        raise
    status = result.status
    metrics = {
        "status": status, "steps": result.steps, "wall_time_s": round(result.wall_time_s, 3),
        "device": str(dev), "seed": seed, "dtype": case.dtype,
        "l2_relative_error": result.l2_relative_error,
        "final_losses": result.losses, "parameters": backend.parameter_values(),
    }
    if export:
        metrics["files"] = [str(p.relative_to(out)) for p in export_backend(backend, out, case.export_resolution)]
    _write_metrics(out, metrics)
    return metrics


def _write_metrics(out: Path, metrics: dict):
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))


def export_backend(backend, out, resolution: int) -> list[Path]:
    from .export import export, plot_field, plot_history
    out = Path(out)
    files = export(backend, out, resolution)
    files.append(plot_field(backend, out / "field.png", min(resolution, 200)))
    saved = out / "checkpoint.pt"
    if saved.exists():
        hist = json.loads(ckpt.load(saved)["history"])
        if hist:
            files.append(plot_history(hist, backend.term_names, out / "loss.png"))
    return files


def load_run(out, device="auto"):
    """``(case, backend)`` of a run directory written by ``pdeml train``, with its trained weights."""
    out = Path(out)
    info_path = out / "run.json"
    if not info_path.is_file():
        fail("DIR", str(out), "holds no run.json", "pass a directory written by `pdeml train`",
             FileNotFoundError)
    info = json.loads(info_path.read_text())
    if info.get("source") is None:
        fail("DIR", str(out), "was trained from a Python Case object, not a file or name",
             "call pdeml.run.export_backend from Python instead")
    case, _ = load_case(info["source"], info.get("case_options") or None)
    changes = info.get("overrides", {})
    case = case.replace(**changes) if changes else case
    backend = build(case, seed=info.get("seed", 0), device=device)
    backend.load_state_dict(ckpt.load(out / "checkpoint.pt", map_location=backend.center.device)["model"])
    return case, backend


def export_run(out, resolution: int | None = None, device="auto") -> list[Path]:
    """Re-export a finished run directory at another resolution."""
    case, backend = load_run(out, device)
    return export_backend(backend, Path(out), resolution or case.export_resolution)


def condition_report(target, options=None, *, seed: int = 0, device="auto", points: int | None = None,
                     max_parameters: int = 5000) -> dict:
    """κ of the linearized PDE operator (:func:`pdeml.gauss_newton.conditioning`) for a case's
    model at initialization, or for a trained run directory; on the case's point counts."""
    from .gauss_newton import conditioning
    from .sampling import draw, point_counts, to_torch
    if (Path(target) / "run.json").is_file():
        case, backend = load_run(target, device)
    else:
        case, _ = load_case(target, options)
        backend = build(case, seed=seed, device=device)
    n_params = sum(p.numel() for p in backend.parameters() if p.requires_grad)
    if n_params > max_parameters:
        fail("case", target, f"has {n_params} parameters, too many for the dense P x P spectrum",
             f"use a smaller model, or pass max_parameters > {n_params} from Python")
    counts = point_counts(points or case.n_domain, case.n_boundary, case.n_initial)
    batch = to_torch(draw(case.problem, counts, np.random.default_rng(seed), case.sampling),
                     backend.center.dtype, backend.center.device)
    rep = conditioning(backend, batch)
    ev = rep.pop("eigenvalues")
    return {**rep, "parameters": n_params, "rank": int(len(ev)), "eigenvalue_max": float(ev.max()),
            "eigenvalue_min": float(ev.min()), "points": counts["domain"]}
