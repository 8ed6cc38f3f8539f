"""One import root and plug-ins: what ``pip install`` puts on ``sys.path``, what a user's own
folders cannot shadow, and a method, a case folder and a subcommand added from outside."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the folders the user fixed, and the import names they install under
FOLDERS = {
    "pdeml": "pdeml",
    "solvers": "pdeml.solvers",
    "operators": "pdeml.operators",
    "samplers": "pdeml.samplers",
    "cases": "pdeml.cases",
}


def _python(args, cwd, env=None, timeout=600):
    full = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full.update({"MPLBACKEND": "Agg", **(env or {})})
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout
    )


def _pip(*args, cwd):
    r = _python(["-m", "pip", "--disable-pip-version-check", "-q", *args], cwd)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """``pip wheel . --no-deps`` of a copy of the source (the build writes into its tree)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    _pip("wheel", ".", "--no-deps", "--no-build-isolation", "-w", str(out), cwd=src)
    (path,) = out.glob("pdeml-*.whl")
    return path


def test_the_wheel_installs_one_top_level_name_and_every_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"pdeml"}, top
    # every folder with an __init__.py is in the wheel under its pdeml name (the explicit
    # package list in pyproject.toml is whole), and the method folders' files come along
    for folder, package in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.relative_to(ROOT / folder).parent
            assert "/".join([*package.split("."), *rel.parts, "__init__.py"]) in names, (
                folder,
                rel,
            )
    assert "pdeml/solvers/pinn.py" in names and "pdeml/cases/poisson_lshape.py" in names
    assert "pdeml/families/navier_stokes.py" in names and "pdeml/py.typed" in names
    eps = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(eps).decode()
    for group in ("[pdeml.methods]", "[pdeml.commands]", "[pdeml.cases]", "[console_scripts]"):
        assert group in text


def test_a_users_own_cases_and_solvers_do_not_change_what_runs(tmp_path):
    """``python -m pdeml`` puts the working directory first on sys.path: a user's ``cases/`` and
    ``solvers/`` there are theirs, not ours."""
    marker = tmp_path / "imported.txt"
    for pkg in ("cases", "solvers", "samplers", "operators"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'a').write('{pkg} ')\n")
    (tmp_path / "cases" / "poisson_lshape.py").write_text("raise SystemExit('the user case ran')\n")
    (tmp_path / "cases" / "my_own.py").write_text("case = None\n")
    listed = _python(["-m", "pdeml", "cases"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    assert "poisson_lshape" in names and "my_own" not in names
    assert names == {p.stem for p in (ROOT / "cases").glob("[!_]*.py")}
    r = _python(
        [
            "-m",
            "pdeml",
            "train",
            "poisson_lshape",
            "--steps",
            "3",
            "--lbfgs-steps",
            "0",
            "--out",
            "run",
            "--no-progress",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["source"] == "poisson_lshape" and info["method"] == "pinn"
    assert info["case"]["method"]["sampler"]["n_domain"] == 2000  # pdeml's lshape case, as built
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["steps"] == 3
    assert not marker.exists(), marker.read_text()


def test_the_old_import_roots_fail_with_the_new_import(tmp_path):
    case = tmp_path / "old.py"
    case.write_text("import pdeml as pl\nfrom solvers import PINN\n")
    for cwd in (tmp_path, ROOT):  # nothing named solvers; a checkout whose folder is on sys.path
        r = _python(["-m", "pdeml", "train", str(case), "--out", str(tmp_path / "run")], cwd)
        assert (
            r.returncode == 2 and "from pdeml.solvers import" in r.stderr and "pl.PINN" in r.stderr
        ), r.stderr
        assert "Traceback" not in r.stderr
    r = _python(["-c", "import samplers"], ROOT)
    assert r.returncode == 1 and "pdeml.samplers" in r.stderr


PLUGIN = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "pdeml-plugin-demo"
        version = "0.0.1"
        [project.entry-points."pdeml.methods"]
        scaled-pinn = "pdeml_plugin_demo:ScaledPINN"
        [project.entry-points."pdeml.cases"]
        demo = "pdeml_plugin_demo.cases"
        [project.entry-points."pdeml.commands"]
        hello = "pdeml_plugin_demo.hello"
        [tool.setuptools]
        packages = ["pdeml_plugin_demo", "pdeml_plugin_demo.cases"]
        """,
    "pdeml_plugin_demo/__init__.py": """
        import dataclasses
        import pdeml as pl
        from pdeml.options import Option, set_field

        @dataclasses.dataclass(frozen=True)
        class ScaledPINN(pl.AbstractMethod):
            '''A method from outside pdeml: a PINN whose network output is multiplied by `scale`.'''
            width: int = 16
            scale: float = 1.0

            @classmethod
            def cli_options(cls):
                return (Option("scale", "output scale", set_field("scale", float), type=float),)

            def build(self, problem, *, seed=0, dtype=None, device="cpu"):
                scale = self.scale
                method = pl.PINN(pl.nn.MLP(self.width, 2), transform=lambda x, y: scale * y,
                                 sampler=pl.samplers.Uniform(64, 2))
                return method.build(problem, seed=seed, dtype=dtype, device=device)
        """,
    "pdeml_plugin_demo/cases/__init__.py": "",
    "pdeml_plugin_demo/cases/plugin_parabola.py": """
        '''-u'' = 2 on (0, 1), u = 0 at both ends: u = x (1 - x) (a case folder from a plug-in).'''
        import pdeml as pl
        from pdeml_plugin_demo import ScaledPINN

        problem = pl.Problem(pl.geometry.Interval(0, 1), lambda x, u: -u.d2("x") - 2.0,
                             [pl.Dirichlet(0.0)], exact=lambda x: x * (1 - x))
        case = pl.Case(problem, ScaledPINN(width=16), steps=300, optimizer=pl.Adam(1e-2))
        """,
    "pdeml_plugin_demo/hello.py": """
        def add_parser(sub):
            p = sub.add_parser("hello", help="a subcommand from a plug-in")
            p.add_argument("--name", default="world")

        def main(args):
            print(f"hello {args.name}")
            return 0
        """,
}


def test_a_plugin_adds_a_method_a_case_folder_and_a_command(tmp_path):
    src, site = tmp_path / "plugin", tmp_path / "site"
    for rel, text in PLUGIN.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(textwrap.dedent(text).lstrip())
    _pip(
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--target",
        str(site),
        str(src),
        cwd=tmp_path,
    )
    env = {"PYTHONPATH": str(site)}
    listed = _python(["-m", "pdeml", "cases"], tmp_path, env)
    assert "plugin_parabola" in listed.stdout and "poisson_lshape" in listed.stdout, listed.stderr
    hello = _python(["-m", "pdeml", "hello", "--name", "pdeml"], tmp_path, env)
    assert hello.returncode == 0 and hello.stdout.strip() == "hello pdeml", hello.stderr
    r = _python(
        [
            "-m",
            "pdeml",
            "train",
            "plugin_parabola",
            "--scale",
            "0.5",
            "--out",
            "run",
            "--no-progress",
            "--threads",
            "1",
        ],
        tmp_path,
        env,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (
        info["method"] == "scaled-pinn" and info["case"]["method"]["scale"] == 0.5
    )  # the option landed
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 300 and metrics["l2_relative_error"] < 0.05, metrics
    # the plug-in's option is the plug-in method's: on pdeml's own PINN it is an error naming it
    bad = _python(
        ["-m", "pdeml", "train", "heat_1d", "--scale", "2", "--out", "bad"], tmp_path, env
    )
    assert bad.returncode == 2 and "--scale" in bad.stderr and "ScaledPINN" in bad.stderr, (
        bad.stderr
    )
