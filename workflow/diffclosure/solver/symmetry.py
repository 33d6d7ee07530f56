"""The symmetries of the square periodic domain, acting on fields, and when the flow has them.

The group D4 of the square: 4 rotations by 90 degrees and 4 reflections, about the origin of the
grid (point (0, 0)), so grid points map to grid points on any n x n grid. An element is an
integer 0..7 whose bits say which of three generators it applies, g = T^a Rx^b Ry^c with
a = bit 2, b = bit 1, c = bit 0: T swaps x and y, Rx maps x to -x, Ry maps y to -y (mod L).

A field is transformed as f'(p) = f(g^-1 p), times det(g) for a pseudo-scalar. Every channel of
this package is one: vorticity, G, H, the subgrid term Pi, the measurements of the target and
the Smagorinsky estimate are terms of the vorticity equation, and a reflection flips the sign of
vorticity. So ``transform`` multiplies by det(g) (+1 for rotations, -1 for reflections).

The Navier-Stokes equation on the torus commutes with g when its forcing does:
f(g^-1 x) det(g) = f(x) for every g (the noise of dns.noise has an isotropic law on a square
box of modes, so it commutes in law). The paper's forcing, Kolmogorov forcing and the ring
with random phases do not; ``dns.forcing.symmetric`` makes the ring do (forcing.py;
config.forcing_commutes says which configs have the symmetry). Then
g maps a DNS trajectory to a DNS trajectory of the same equation, and the filter and the
subgrid term commute with g (tests/solver/test_symmetry.py), so (w_bar, Pi) and (g w_bar, g Pi)
are equally likely samples of the training data: augmenting by D4 is exact.
"""

from __future__ import annotations

import numpy as np

ELEMENTS = tuple(range(8))


def parts(element: int) -> tuple[bool, bool, bool]:
    """(swap x and y, reflect x, reflect y) of an element."""
    if element not in ELEMENTS:
        raise ValueError(f"a D4 element is an integer 0..7, got {element!r}")
    return bool(element & 4), bool(element & 2), bool(element & 1)


def determinant(element: int) -> int:
    """+1 for a rotation, -1 for a reflection."""
    return -1 if sum(parts(element)) % 2 else 1


def source_indices(n: int, element: int) -> tuple[np.ndarray, np.ndarray]:
    """(iy, ix), each (n, n): the transformed field at [j, i] is the field at [iy, ix], the grid
    point g^-1 (i, j)."""
    swap, rx, ry = parts(element)
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    # g^-1 = Ry^c Rx^b T^a (each generator is its own inverse): T acts first.
    if swap:
        x, y = y, x
    if rx:
        x = (-x) % n
    if ry:
        y = (-y) % n
    return y, x


def transform(field, element: int, pseudo: bool = True):
    """g applied to fields (..., n, n), numpy arrays or torch tensors (module docstring)."""
    n = field.shape[-1]
    if field.shape[-2] != n:
        raise ValueError(f"D4 acts on square fields, got shape {tuple(field.shape)}")
    iy, ix = source_indices(n, element)
    if not isinstance(field, np.ndarray):  # a torch tensor: index with tensors on its device
        import torch

        iy, ix = (torch.as_tensor(a, device=field.device) for a in (iy, ix))
    out = field[..., iy, ix]
    return -out if pseudo and determinant(element) < 0 else out


def symmetrise(field):
    """The D4 average of a pseudo-scalar field: a field g leaves unchanged for every g."""
    return sum(transform(field, e) for e in ELEMENTS) / len(ELEMENTS)
