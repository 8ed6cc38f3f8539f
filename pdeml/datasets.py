"""Datasets of solutions on disk: chunked HDF5, read lazily, at a lower resolution if asked.

A dataset file holds one array per field, shaped (samples, ...), chunked one sample at a time
so reading sample i reads only its chunk. Its attributes record the generator's settings
(``settings``, JSON) so it can be regenerated and checked, and the train/test split
(``n_train``: the first ``n_train`` samples train, the rest test).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ._validate import fail, positive_int
from .sampling import EpochSampler
from .settings import frozen_set


def truncate(w: torch.Tensor, m: int) -> torch.Tensor:
    """Spectral truncation of periodic fields (..., n, n) to (..., m, m), m <= n even: the
    Fourier modes :math:`|k_x|, |k_y| < m/2` are kept (the grid's Nyquist modes dropped), so a
    field whose modes all lie below m/2 is resampled exactly (tested)."""
    n = w.shape[-1]
    m = positive_int("resolution", m)
    if m > n or m % 2 or w.shape[-2] != n:
        fail(
            "resolution",
            m,
            f"cannot be reached from an {w.shape[-2]} x {n} grid by truncation",
            f"pass an even size <= {n}",
        )
    if m == n:
        return w
    h = m // 2
    wh = torch.fft.rfft2(w)
    low = torch.cat([wh[..., :h, :h], wh[..., n - h + 1 :, :h]], dim=-2)  # |k_x| < h, 0 <= k_y < h
    low = torch.cat([low[..., :h, :], torch.zeros_like(low[..., :1, :]), low[..., h:, :]], dim=-2)
    low = torch.nn.functional.pad(low, (0, 1))  # k_y = h column: 0
    return torch.fft.irfft2(low, s=(m, m)) * (m * m) / (n * n)


#: the layout of dataset files (fields, ``settings``, ``n_train``)
FORMAT = 1


def _plain(value):
    """An HDF5 attribute as a plain Python value (numpy scalars read back as such)."""
    return value.item() if isinstance(value, np.generic) else value


class Writer:
    """Write a dataset sample batch by sample batch (memory stays one batch), to a temporary
    name renamed on :meth:`close`: a file that has the final name is complete.

    Example:
        >>> rng = np.random.default_rng(0)             # 10 samples of w (T = 5, 8 x 8), two batches
        >>> with Writer("d.h5", {"w": (5, 8, 8)}, samples=10, settings={"family": "demo"},
        ...             n_train=8) as wr:
        ...     for _ in range(2):
        ...         wr.append({"w": rng.standard_normal((5, 5, 8, 8))})   # {"w": (b, T, n, n)}
        >>> Dataset("d.h5").fields["w"].shape
        (10, 5, 8, 8)
    """

    def __init__(
        self, path, shapes: dict, *, samples: int, settings: dict, n_train: int, dtype="float32"
    ):
        import h5py

        self.path = Path(path)
        self.samples = positive_int("samples", samples)
        if not 0 < n_train < samples:
            fail(
                "n_train",
                n_train,
                f"must leave train and test samples of {samples}",
                f"pass 1..{samples - 1}",
            )
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = h5py.File(self.tmp, "w")
        except OSError as e:  # read-only, a name too long, no space: errno alone said little
            reason = (
                getattr(e, "strerror", None) or str(e).split("(")[0].strip() or type(e).__name__
            )
            fail(
                "--out",
                str(self.path),
                f"cannot be written ({reason})",
                "pass a file in a directory you can write to, with a name under 255 characters",
                PermissionError if isinstance(e, PermissionError) else OSError,
            )
        for name, shape in shapes.items():
            self.file.create_dataset(name, shape=(samples, *shape), chunks=(1, *shape), dtype=dtype)
        self.file.attrs["settings"] = json.dumps(settings)
        self.file.attrs["n_train"] = int(n_train)
        self.file.attrs["format"] = FORMAT
        self.count = 0

    def append(self, arrays: dict) -> None:
        n = {len(a) for a in arrays.values()}.pop()
        if self.count + n > self.samples:
            fail(
                "append",
                n,
                f"would write past the {self.samples} samples declared",
                "declare more samples",
            )
        for name, a in arrays.items():
            self.file[name][self.count : self.count + n] = np.asarray(a)
        self.count += n

    def close(self) -> Path:
        self.file.close()
        if self.count != self.samples:
            self.tmp.unlink(missing_ok=True)
            fail(
                "samples",
                self.samples,
                f"were declared but {self.count} written",
                "append them all",
            )
        self.tmp.replace(self.path)
        return self.path

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *rest):
        if exc_type is None:
            self.close()
        else:
            self.file.close()
            self.tmp.unlink(missing_ok=True)


def interpolate(w: torch.Tensor, m: int) -> torch.Tensor:
    """Trigonometric interpolation of periodic fields (..., n, n) onto a finer (..., m, m) grid:
    the Fourier modes below n/2 are kept and the higher ones are zero, so a field with modes
    below n/2 is the same function on the finer grid (the inverse of :func:`truncate`)."""
    n = w.shape[-1]
    m = positive_int("resolution", m)
    if m < n or m % 2 or n % 2:
        fail("resolution", m, f"is not an even size >= the grid's {n}", f"pass e.g. {2 * n}")
    h = n // 2
    wh = torch.fft.rfft2(w, norm="forward")
    out = torch.zeros(*w.shape[:-2], m, m // 2 + 1, dtype=wh.dtype, device=w.device)
    out[..., :h, :h] = wh[..., :h, :h]
    out[..., m - h + 1 :, :h] = wh[..., n - h + 1 :, :h]
    return torch.fft.irfft2(out, s=(m, m), norm="forward")


def write(path, arrays: dict, *, settings: dict, n_train: int) -> Path:
    """Write ``{name: array (samples, ...)}`` as chunked HDF5 with ``settings`` and the split."""
    sizes = {len(a) for a in arrays.values()}
    if len(sizes) != 1:
        fail(
            "arrays",
            {k: np.shape(v) for k, v in arrays.items()},
            "differ in their sample counts",
            "pass arrays with one sample count",
        )
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    wr = Writer(
        path,
        {k: v.shape[1:] for k, v in arrays.items()},
        samples=sizes.pop(),
        settings=settings,
        n_train=n_train,
        dtype=next(iter(arrays.values())).dtype,
    )
    with wr:
        wr.append(arrays)
    return wr.path


class Dataset:
    """A dataset file read lazily: ``ds[i]`` reads sample i (or a slice) of every field, at
    ``resolution`` by spectral truncation of the last two axes if given.

    Example:
        >>> w = np.zeros((10, 5, 8, 8))                # 10 samples of (T, n, n)
        >>> _ = write("d.h5", {"w": w}, settings={"family": "demo"}, n_train=8)
        >>> ds = Dataset("d.h5", resolution=4)
        >>> ds[3]["w"].shape                # (T, 4, 4): read at resolution 4
        torch.Size([5, 4, 4])
        >>> ds.train, ds.test               # index ranges of the recorded split
        (range(0, 8), range(8, 10))
    """

    def __init__(self, path, resolution: int | None = None):
        import h5py

        self.path = Path(path)
        if self.path.is_dir():
            fail(
                "data",
                str(path),
                "is a directory, not a dataset file",
                "pass the .h5 file written by `pdeml data CASE --out FILE`",
                IsADirectoryError,
            )
        if not self.path.is_file():
            fail(
                "data",
                str(path),
                "does not exist",
                "write one first (pdeml data CASE --out FILE)",
                FileNotFoundError,
            )
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as e:
            fail("data", str(path), f"is not a readable HDF5 dataset ({e})", "write it again")
        try:
            self._check()
        except BaseException:
            self._file.close()
            raise
        self.resolution = resolution

    def _check(self) -> None:
        """The file is a pdeml dataset of this format with a valid split, or a clear error."""
        attrs, path = self._file.attrs, str(self.path)
        redo = "write it again with `pdeml data CASE --out FILE`"
        missing = [k for k in ("format", "settings", "n_train") if k not in attrs]
        if missing:
            fail("data", path, f"lacks the attributes {missing}: not a pdeml dataset", redo)
        if attrs["format"] != FORMAT:
            fail(
                "data",
                path,
                f"has format {_plain(attrs['format'])!r}; this pdeml reads format {FORMAT}",
                redo,
            )
        try:
            self.settings = json.loads(attrs["settings"])
        except (TypeError, ValueError):
            fail("data", path, "has unreadable generator settings", redo)
        self.fields = {k: self._file[k] for k in self._file.keys()}
        sizes = {len(v) for v in self.fields.values()}
        if len(sizes) != 1:
            fail("data", path, f"holds fields of different sample counts {sorted(sizes)}", redo)
        self.samples = sizes.pop()
        n_train = _plain(attrs["n_train"])
        if (
            isinstance(n_train, bool)
            or not isinstance(n_train, int)
            or not 0 < n_train < self.samples
        ):
            fail(
                "data",
                path,
                f"records n_train={n_train!r}, not a split of its {self.samples} samples",
                f"the train split must be 1..{self.samples - 1}; {redo}",
            )
        self.train, self.test = range(0, int(n_train)), range(int(n_train), self.samples)

    def check_origin(self, family) -> None:
        """The file was generated for ``family`` with these settings: an error naming each
        setting that differs (data of another family, viscosity or grid trains silently wrong)."""
        from .settings import describe

        want, got = describe(family), self.settings.get("family")
        if not isinstance(got, dict) or got.get("type") != want.get("type"):
            kind = got.get("type") if isinstance(got, dict) else got
            fail(
                "data",
                str(self.path),
                f"was generated for {kind!r}, not this case's {want.get('type')!r}",
                "generate the case's own data: pdeml data CASE --out FILE",
            )
        differ = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
        if not differ and hasattr(family, "shapes"):  # the fields it must hold, per sample
            need = {k: tuple(v) for k, v in family.shapes().items()}
            have = {k: tuple(v.shape[1:]) for k, v in self.fields.items()}
            if any(have.get(k) != v for k, v in need.items()):
                fail(
                    "data",
                    str(self.path),
                    f"holds the fields {have}, not the family's {need} (per sample)",
                    "regenerate it with `pdeml data CASE`",
                )
        if differ:
            said = ", ".join(f"{k}: file {a!r}, case {b!r}" for k, (a, b) in differ.items())
            fail(
                "data",
                str(self.path),
                f"was generated with other family settings ({said})",
                "pass the case options the data was written with (e.g. --n), or regenerate it "
                "with `pdeml data CASE` and this case's options",
            )

    def __len__(self):
        return self.samples

    def __getitem__(self, idx) -> dict[str, torch.Tensor]:
        out = {}
        for name, data in self.fields.items():
            t = torch.as_tensor(self._read(data, idx))
            out[name] = truncate(t, self.resolution) if self.resolution is not None else t
        return out

    @staticmethod
    def _read(data, idx) -> np.ndarray:
        """``data[idx]``; a list of samples is read one chunk (sample) at a time: h5py's own list
        indexing was 70x slower (0.24 s for 8 samples of 50 x 128², the whole step on a GPU)."""
        if isinstance(idx, (int, np.integer, slice)):
            return data[idx]
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        out = np.empty((len(idx), *data.shape[1:]), dtype=data.dtype)
        for j, i in enumerate(idx):
            data.read_direct(out, np.s_[int(i)], np.s_[j])
        return out

    def close(self):
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclasses.dataclass(frozen=True)
class Minibatches(EpochSampler):
    """Training batches from a dataset file: ``batch_size`` samples of its train split per step,
    in a fresh random order every epoch (the dataset's counterpart of a collocation sampler:
    the same run contract, so ``fit``, checkpoints and resume treat both alike).

    A run's batch is ``{"data": {field: array (batch_size, ...)}}``; its state (the epoch's
    order, the position in it, the generator) is checkpointed, so a resumed run draws the same
    batches.

    Args:
        path: the dataset (:func:`write`). batch_size: samples per step.
        resolution: read at this grid size by spectral truncation (default: as stored).

    Example:
        >>> w = np.zeros((10, 5, 8, 8))                # 10 samples of (T, n, n)
        >>> _ = write("d.h5", {"w": w}, settings={"family": "demo"}, n_train=8)
        >>> run = Minibatches("d.h5", 4).init(None, np.random.default_rng(0))
        >>> run.batch(0)["data"]["w"].shape        # (batch_size, T, n, n)
        (4, 5, 8, 8)
    """

    path: str
    batch_size: int = 20
    _: dataclasses.KW_ONLY
    resolution: int | None = None

    def __post_init__(self):
        frozen_set(self, path=str(self.path))
        positive_int("batch_size", self.batch_size)

    def _start(self, run):
        run.dataset = Dataset(self.path, self.resolution)
        if run.problem is not None:  # the case's family: the file must have been made for it
            run.dataset.check_origin(run.problem)
        if self.batch_size > len(run.dataset.train):
            fail(
                "batch_size",
                self.batch_size,
                f"exceeds the {len(run.dataset.train)} training samples of {self.path}",
                f"pass at most {len(run.dataset.train)}",
            )
        self._start_order(run)

    def _items(self, run):
        return len(run.dataset.train)

    #: under torchrun each rank reads its own samples only
    sharded_terms: ClassVar[tuple] = ("data",)

    def _read(self, run, idx, fresh):
        start = run.dataset.train.start  # h5py reads sorted indices
        out = {
            "data": {
                k: v.numpy() for k, v in run.dataset[list(start + self._own(run, idx))].items()
            }
        }
        for name, v in out["data"].items():
            if not np.isfinite(v).all():  # else training diverges and the message blames --lr
                rows = sorted({int(i) for i in np.argwhere(~np.isfinite(v))[:, 0]})
                fail(
                    "data",
                    self.path,
                    f"holds NaN/inf in field {name!r} (samples {[int(idx[r]) for r in rows][:5]} "
                    "of the training split)",
                    "regenerate the dataset (`pdeml data CASE --overwrite`)",
                )
        return out

    def __repr__(self):
        return f"Minibatches({self.path!r}, {self.batch_size})"
