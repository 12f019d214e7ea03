#!/usr/bin/env python3
"""Anchor for `vitrine-loadtest scan`: FAISS brute-force scan rates, one thread.

Prints JSON with single-query and batched queries/sec for IndexScalarQuantizer
(QT_8bit, inner product) and IndexFlatIP on a seeded random catalogue of the
same shape. Scan cost does not depend on the values, only on the shape.
"""
import argparse, json, time

import faiss
import numpy as np


def rate(index, queries, k, batch, seconds):
    index.search(queries[:batch], k)  # warm-up
    done, i, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if i + batch > len(queries):
            i = 0
        index.search(queries[i:i + batch], k)
        i += batch
        done += batch
    return done / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--index", choices=["sq8", "flat", "both"], default="both")
    a = p.parse_args()
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(1)
    items = rng.standard_normal((a.items, a.dim), dtype=np.float32)
    queries = rng.standard_normal((1024, a.dim), dtype=np.float32)
    out = {"items": a.items, "dim": a.dim, "k": a.k, "batch": a.batch, "faiss": faiss.__version__,
           "simd": faiss.get_compile_options()}
    if a.index in ("sq8", "both"):
        sq = faiss.IndexScalarQuantizer(a.dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        sq.train(items)
        sq.add(items)
        out["sq8_qps"] = rate(sq, queries, a.k, a.batch, a.seconds)
    if a.index in ("flat", "both"):
        flat = faiss.IndexFlatIP(a.dim)
        flat.add(items)
        out["flat_qps"] = rate(flat, queries, a.k, a.batch, a.seconds)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
