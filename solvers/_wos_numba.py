r"""The walk-on-spheres kernel in numba: CPU, parallel over walks, one walk per loop iteration
(no lock step, so a long walk holds up nobody). The same estimator as :func:`pdeml.solvers.wos.walk`
(see its module docstring); the two are tested against each other in distribution.

Numba cannot call the case's torch functions, so the split is:

- in numba: the signed distance of the geometry (boxes, balls, polygons and triangle meshes;
  :func:`geometry_spec` says which), the jumps, the source points' radial law, Russian roulette,
  and the closest boundary point at exit (x − d∇d with a central-difference gradient);
- in torch, vectorized afterwards: g at the exit points, and f at the recorded source points
  (a constant f is summed inside the kernel and records nothing).

Each walk seeds numba's generator with ``seed + its index`` (mod 2³²), so results do not depend
on the number of threads; the backend offsets ``seed`` by each chunk's first walk.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from pdeml._validate import fail

BOX, BALL, POLYGON, MESH = 0, 1, 2, 3


def summarize(samples: torch.Tensor, steps: float, unfinished: int) -> dict:
    """What both kernels return: each walk's estimate (N, walks), their mean and its standard
    error (sample std / sqrt(walks)), the mean steps per walk and the walks stopped by max_steps."""
    n, walks = samples.shape
    std = samples.std(dim=1) if walks > 1 else torch.full((n,), float("inf"), dtype=samples.dtype)
    return {
        "mean": samples.mean(dim=1),
        "std_error": std / math.sqrt(walks),
        "steps": steps,
        "unfinished": unfinished,
        "samples": samples,
    }


def available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def geometry_spec(geom):
    """``(kind, params (P,), A, B, C)`` arrays describing ``geom`` to the kernel, or None when
    the kernel has no distance for it (CSG, ellipses: use the torch kernel)."""
    from pdeml.geometry import Cuboid, Disk, Mesh, Polygon, Rectangle, Sphere

    empty = np.zeros((1, 3))
    if isinstance(geom, (Rectangle, Cuboid)):
        lo, hi = geom.bbox
        return BOX, np.concatenate([lo, hi]).astype(float), empty, empty, empty
    if isinstance(geom, (Disk, Sphere)):
        return (
            BALL,
            np.append(np.asarray(geom.center, float), float(geom.radius)),
            empty,
            empty,
            empty,
        )
    if isinstance(geom, Polygon):
        v = np.asarray(geom.vertices, dtype=float)
        a = np.zeros((len(v), 3))
        b = np.zeros((len(v), 3))
        a[:, :2], b[:, :2] = v, np.roll(v, -1, axis=0)
        return POLYGON, np.zeros(1), a, b, empty
    if isinstance(geom, Mesh):
        t = geom.triangles
        return MESH, np.zeros(1), geom.points[t[:, 0]], geom.points[t[:, 1]], geom.points[t[:, 2]]
    return None


_KERNEL = None


def _compile():
    """The jitted kernel (compiled on first use: numba is imported only when it runs)."""
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL
    import numba as nb

    @nb.njit(cache=True, fastmath=False)
    def seg_dist(x, y, a, b):
        dx, dy = b[0] - a[0], b[1] - a[1]
        L = dx * dx + dy * dy
        t = 0.0 if L == 0 else ((x - a[0]) * dx + (y - a[1]) * dy) / L
        t = min(1.0, max(0.0, t))
        ex, ey = x - a[0] - t * dx, y - a[1] - t * dy
        return math.sqrt(ex * ex + ey * ey)

    from pdeml.geometry.mesh_numba import kernels

    tri_dist, solid_angle = kernels().tri_dist, kernels().solid_angle

    @nb.njit(cache=True)
    def distance(kind, P, A, B, C, x):
        """Distance to the boundary (>= 0 inside, negative outside)."""
        d = x.shape[0]
        if kind == 0:  # box
            inner = 1e300
            outer = 0.0
            for i in range(d):
                q = max(P[i] - x[i], x[i] - P[d + i])  # > 0 outside along axis i
                inner = min(inner, -q)
                if q > 0:
                    outer += q * q
            return -math.sqrt(outer) if outer > 0 else inner
        if kind == 1:  # ball
            r = 0.0
            for i in range(d):
                r += (x[i] - P[i]) ** 2
            return P[d] - math.sqrt(r)
        if kind == 2:  # polygon: segments, crossing number
            best, inside = 1e300, False
            for k in range(A.shape[0]):
                best = min(best, seg_dist(x[0], x[1], A[k], B[k]))
                if (A[k, 1] > x[1]) != (B[k, 1] > x[1]):
                    cross = A[k, 0] + (x[1] - A[k, 1]) * (B[k, 0] - A[k, 0]) / (B[k, 1] - A[k, 1])
                    if x[0] < cross:
                        inside = not inside
            return best if inside else -best
        best, wind = 1e300, 0.0  # triangle mesh: winding number
        for k in range(A.shape[0]):
            best = min(best, tri_dist(x, A[k], B[k], C[k]))
            wind += solid_angle(x, A[k], B[k], C[k])
        return best if abs(wind) > 2 * math.pi else -best

    @nb.njit(parallel=True, cache=True)
    def kernel(
        x0,
        walks,
        kind,
        P,
        A,
        B,
        C,
        eps,
        max_steps,
        seed,
        stride,
        sigma,
        f_const,
        record,
        rec_steps,
        exits,
        ended,
        acc,
        ys,
        ws,
        nrec,
        steps,
    ):
        n, d = x0.shape
        k = math.sqrt(sigma)
        for j in nb.prange(n * walks):
            np.random.seed((seed + (j // walks) * stride + j % walks) % 4294967296)
            x = x0[j // walks].copy()
            total, r_count, s = 0.0, 0, 0
            ended[j] = 1
            while True:
                R = distance(kind, P, A, B, C, x)
                if R < eps or s >= max_steps:
                    break
                s += 1
                # a source point with density G/|G| and the ball's Green mass
                if d == 2:
                    rad = R * math.sqrt(np.random.random() * np.random.random())
                    mass = R * R / 4.0
                else:
                    u1, u2, u3 = np.random.random(), np.random.random(), np.random.random()
                    rad = R * (u1 + u2 + u3 - min(u1, min(u2, u3)) - max(u1, max(u2, u3)))
                    mass = R * R / 6.0
                direction = np.random.standard_normal(d)
                direction /= math.sqrt(direction @ direction)
                wgt = mass
                if sigma > 0:  # 3-D only (2-D is refused in walk_numba)
                    r = max(rad, 1e-300)
                    g_s = math.sinh(k * (R - r)) / (4 * math.pi * r * math.sinh(k * R))
                    g_l = (1 / r - 1 / R) / (4 * math.pi)
                    wgt = mass * g_s / max(g_l, 1e-300)
                if record:
                    if r_count < rec_steps:
                        ys[j, r_count, :] = x + rad * direction
                        ws[j, r_count] = wgt
                    r_count += 1
                elif f_const != 0.0:
                    total += wgt * f_const
                direction = np.random.standard_normal(d)
                direction /= math.sqrt(direction @ direction)
                x = x + R * direction
                if sigma > 0:
                    p = k * R / math.sinh(k * R) if k * R > 0 else 1.0
                    if np.random.random() >= p:
                        ended[j] = 0  # killed: no boundary value
                        break
            # closest boundary point by a central-difference gradient of the distance
            h = max(eps * 1e-2, 1e-12)
            grad = np.zeros(d)
            for i in range(d):
                xp, xm = x.copy(), x.copy()
                xp[i] += h
                xm[i] -= h
                grad[i] = (distance(kind, P, A, B, C, xp) - distance(kind, P, A, B, C, xm)) / (
                    2 * h
                )
            norm = math.sqrt(grad @ grad)
            # R: the distance at x from the loop's last check (a killed walk's exit is never read)
            exits[j, :] = x - R * grad / norm if norm > 0 else x
            acc[j] = total
            nrec[j] = r_count
            steps[j] = s

    _KERNEL = kernel
    return kernel


def walk_numba(
    x0: np.ndarray,
    walks: int,
    spec,
    *,
    boundary_value,
    source=None,
    f_const: float = 0.0,
    sigma: float = 0.0,
    epsilon: float,
    max_steps: int,
    seed: int,
    record_steps: int = 32,
    stride: int | None = None,
) -> dict:
    """``walks`` walks from each row of ``x0`` (N, d) with the numba kernel; ``boundary_value``
    and ``source`` are torch functions of points (M, d) -> (M,), evaluated after the walks.
    Walk k of point i seeds with ``seed + i * stride + k`` (``stride`` defaults to ``walks``):
    a rank that runs walks K..K+walks of each point of W passes ``stride=W`` and ``seed``
    offset by K, and so runs exactly those walks of the single-process solve.
    Source points are recorded for the first ``record_steps`` steps of each walk; if a walk took
    more, the walks are run again with room for all (same seeds, so the same walks).
    Returns what :func:`pdeml.solvers.wos.walk` returns."""
    stride = walks if stride is None else stride
    import torch

    kind, P, A, B, C = spec
    n, d = x0.shape
    if sigma > 0 and d == 2:
        fail(
            "kernel",
            "numba",
            "has no Bessel functions for the 2-D screened Green's function",
            'use kernel="torch" for 2-D ScreenedPoisson',
        )
    record = source is not None
    rec = record_steps if record else 1
    m = n * walks
    exits, ended = np.zeros((m, d)), np.zeros(m, np.int64)
    acc, nrec, steps = np.zeros(m), np.zeros(m, np.int64), np.zeros(m, np.int64)
    ys, ws = np.zeros((m if record else 1, rec, d)), np.zeros((m if record else 1, rec))
    _compile()(
        np.ascontiguousarray(x0, dtype=float),
        int(walks),
        int(kind),
        P,
        A[:, :3].copy(),
        B[:, :3].copy(),
        C[:, :3].copy(),
        float(epsilon),
        int(max_steps),
        int(seed),
        int(stride),
        float(sigma),
        float(f_const),
        record,
        rec,
        exits,
        ended,
        acc,
        ys,
        ws,
        nrec,
        steps,
    )
    if record and int(nrec.max()) > rec:  # a long walk: run again with room for it
        return walk_numba(
            x0,
            walks,
            spec,
            boundary_value=boundary_value,
            source=source,
            f_const=f_const,
            sigma=sigma,
            epsilon=epsilon,
            max_steps=max_steps,
            seed=seed,
            record_steps=int(nrec.max()),
            stride=stride,
        )
    total = acc.copy()
    to = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    if ended.any():
        idx = np.nonzero(ended)[0]
        total[idx] += boundary_value(to(exits[idx])).double().numpy()
    if record:
        mask = np.arange(rec)[None, :] < nrec[:, None]
        fy = source(to(ys[mask])).double().numpy()
        contrib = np.zeros(mask.shape)
        contrib[mask] = fy * ws[mask]
        total += contrib.sum(axis=1)
    return summarize(
        to(total.reshape(n, walks)), float(steps.mean()), int((steps >= max_steps).sum())
    )
