#!/usr/bin/env python3
"""Which int8 scheme for factor matrices? Measures top-10 overlap with the
f32 model and the largest score error for: symmetric per-row (what the
format stores), asymmetric per-row (scale + zero point), symmetric
per-matrix (one scale), on an ALS model's factors.

Usage: python scripts/experiments/int8_schemes.py USERS.npy ITEMS.npy [SEEN.csv]
(e.g. the files `accuracy_anchors.py implicit-export` writes). Needs numpy.
"""
import sys
import numpy as np

U = np.load(sys.argv[1]).astype(np.float32)
V = np.load(sys.argv[2]).astype(np.float32)
rng = np.random.default_rng(0)
users = rng.choice(len(U), size=min(2000, len(U)), replace=False)


def sym_row(m):
    s = np.abs(m).max(1, keepdims=True) / 127
    s[s == 0] = 1
    return np.round(m / s).clip(-127, 127) * s


def asym_row(m):
    lo, hi = m.min(1, keepdims=True), m.max(1, keepdims=True)
    s = (hi - lo) / 255
    s[s == 0] = 1
    z = np.round(-lo / s) - 128
    q = (np.round(m / s) + z).clip(-128, 127)
    return (q - z) * s


def sym_matrix(m):
    s = np.abs(m).max() / 127
    return np.round(m / s).clip(-127, 127) * s


exact = U[users] @ V.T
top = np.argsort(-exact, axis=1)[:, :10]
print(f"{'scheme':<28} {'overlap@10':>10} {'max |Δscore|':>13}")
for name, f in [("symmetric per-row", sym_row), ("asymmetric per-row", asym_row), ("symmetric per-matrix", sym_matrix)]:
    # Both sides quantised, as the artifact stores them.
    approx = f(U)[users] @ f(V).T
    t = np.argsort(-approx, axis=1)[:, :10]
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, t)])
    print(f"{name:<28} {overlap:>10.4f} {np.abs(approx - exact).max():>13.3e}")
