#!/usr/bin/env python3
"""Anchors for scripts/accuracy.py, run in the venv that has them.

  surprise-kfold U_DATA           Surprise SVD, 5-fold RMSE/MAE and total fit time
  implicit-als SPLIT_DIR K        implicit ALS on a dumped split: NDCG/recall@K, fit time
  ease-numpy SPLIT_DIR K LAMBDA   dense numpy EASE on a dumped split: NDCG@K with train history
                                  (RecBole's rule) and with train+valid history
  implicit-export SPLIT_DIR OUT   implicit ALS on a dumped split, saved for vitrine-quantize --from-npy
                                  (users.npy, items.npy, id files, seen.csv) with its own recommend() top 10
  compare-topk OUT VITRINE_TOPK   share of users whose top 10 equals implicit's (exactly, and up to ties)
  metrics SPLIT_DIR TOPK_FILE K   numpy metrics of Vitrine's dumped top-K lists
  implicit-scale TSV THREADS IT   implicit ALS on a large log: time and peak RSS
  measure CMD...                  wall time and peak RSS of one command
Each prints one JSON object.
"""
import json, sys, time
import numpy as np


def load_split(d):
    rows = {}
    for name in ("train", "valid", "test"):
        with open(f"{d}/{name}.tsv") as f:
            rows[name] = [line.rstrip("\n").split("\t")[:2] for line in f if line.strip()]
    return rows


def ndcg_recall(ranked, relevant, k):
    """RecBole's definitions, written independently of the Rust code."""
    hits = np.array([1.0 if r in relevant else 0.0 for r in ranked[:k]])
    dcg = float((hits / np.log2(np.arange(2, len(hits) + 2))).sum()) if len(hits) else 0.0
    idcg = float((1.0 / np.log2(np.arange(2, min(len(relevant), k) + 2))).sum())
    return dcg / idcg, hits.sum() / len(relevant), hits.sum() / k


def surprise_kfold(path):
    from surprise import SVD, Dataset, Reader, accuracy
    from surprise.model_selection import KFold
    data = Dataset.load_from_file(path, reader=Reader(line_format="user item rating timestamp", sep="\t"))
    rmses, maes, fit = [], [], 0.0
    for trainset, testset in KFold(n_splits=5, random_state=0).split(data):
        algo = SVD(random_state=0)
        t = time.perf_counter()
        algo.fit(trainset)
        fit += time.perf_counter() - t
        pred = algo.test(testset)
        rmses.append(accuracy.rmse(pred, verbose=False))
        maes.append(accuracy.mae(pred, verbose=False))
    return {"rmse": float(np.mean(rmses)), "mae": float(np.mean(maes)), "fit_seconds": fit}


def implicit_als(d, k):
    import scipy.sparse as sp
    from implicit.als import AlternatingLeastSquares
    s = load_split(d)
    users = {u: i for i, u in enumerate(sorted({u for part in s.values() for u, _ in part}))}
    items = {v: i for i, v in enumerate(sorted({v for part in s.values() for _, v in part}))}
    def matrix(parts):
        pairs = [(users[u], items[v]) for p in parts for u, v in s[p]]
        r, c = zip(*pairs)
        m = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(users), len(items)))
        m.data[:] = 1.0
        return m
    train, seen = matrix(["train"]), matrix(["train", "valid"])
    model = AlternatingLeastSquares(factors=64, regularization=0.5, alpha=3.0, iterations=15,
                                    num_threads=1, random_state=42, use_gpu=False)
    t = time.perf_counter()
    model.fit(train, show_progress=False)
    fit = time.perf_counter() - t
    relevant = {}
    for u, v in s["test"]:
        relevant.setdefault(users[u], set()).add(items[v])
    uids = np.array(sorted(relevant))
    ids, _ = model.recommend(uids, seen[uids], N=k, filter_already_liked_items=True)
    scores = [ndcg_recall(list(row), relevant[u], k) for u, row in zip(uids, ids)]
    return {"ndcg": float(np.mean([x[0] for x in scores])), "recall": float(np.mean([x[1] for x in scores])),
            "fit_seconds": fit, "users": len(uids)}


def ease_numpy(d, k, lam):
    """Steck's EASE in a few lines of numpy (dense B, no sparsification)."""
    s = load_split(d)
    users = {u: i for i, u in enumerate(sorted({u for part in s.values() for u, _ in part}))}
    items = {v: i for i, v in enumerate(sorted({v for part in s.values() for _, v in part}))}
    def matrix(part):
        x = np.zeros((len(users), len(items)))
        for u, v in s[part]:
            x[users[u], items[v]] = 1.0
        return x
    train, valid, test = matrix("train"), matrix("valid"), matrix("test")
    t = time.perf_counter()
    g = train.T @ train
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    fit = time.perf_counter() - t
    masked = (train + valid) > 0
    def ndcg(history):
        scores = history @ b
        scores[masked] = -np.inf
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        rows = [u for u in range(len(users)) if test[u].any()]
        return float(np.mean([ndcg_recall(list(top[u]), set(np.flatnonzero(test[u])), k)[0] for u in rows]))
    return {"ndcg_train_history": ndcg(train), "ndcg_train_valid_history": ndcg(train + valid), "fit_seconds": fit}


def implicit_export(d, out):
    """Trains implicit's ALS (the issue's parameters) on the training slice and
    writes what a data scientist would hand over: factor .npy files, id
    files, the interactions to filter (train + valid), and implicit's own
    recommend() top 10 for every user."""
    import os
    import scipy.sparse as sp
    from implicit.als import AlternatingLeastSquares
    os.makedirs(out, exist_ok=True)
    s = load_split(d)
    user_ids = sorted({u for part in s.values() for u, _ in part})
    item_ids = sorted({v for part in s.values() for _, v in part})
    users = {u: i for i, u in enumerate(user_ids)}
    items = {v: i for i, v in enumerate(item_ids)}
    def matrix(parts):
        pairs = [(users[u], items[v]) for p in parts for u, v in s[p]]
        r, c = zip(*pairs)
        m = sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(users), len(items)))
        m.data[:] = 1.0
        return m
    train, seen = matrix(["train"]), matrix(["train", "valid"])
    model = AlternatingLeastSquares(factors=64, regularization=0.5, alpha=3.0, iterations=15,
                                    num_threads=1, random_state=42, use_gpu=False)
    model.fit(train, show_progress=False)
    np.save(f"{out}/users.npy", np.ascontiguousarray(model.user_factors, dtype=np.float32))
    np.save(f"{out}/items.npy", np.ascontiguousarray(model.item_factors, dtype=np.float32))
    with open(f"{out}/user_ids.txt", "w") as f:
        f.write("".join(f"{u}\n" for u in user_ids))
    with open(f"{out}/item_ids.txt", "w") as f:
        f.write("".join(f"{v}\n" for v in item_ids))
    with open(f"{out}/seen.csv", "w") as f:
        f.write("user,item\n")
        for p in ("train", "valid"):
            f.write("".join(f"{u},{v}\n" for u, v in s[p]))
    uids = np.arange(len(user_ids))
    ids, _ = model.recommend(uids, seen[uids], N=10, filter_already_liked_items=True)
    with open(f"{out}/implicit-top10.tsv", "w") as f:
        for u, row in zip(uids, ids):
            f.write(f"{user_ids[u]}\t{','.join(item_ids[i] for i in row)}\n")
    return {"users": len(user_ids), "items": len(item_ids)}


def compare_topk(out, vitrine_topk):
    """Exact agreement of top-10 lists, and agreement up to ties: lists that
    differ only where implicit's own float32 scores of the swapped items are
    within 1e-5 (relative) of the 10th score."""
    U = np.load(f"{out}/users.npy")
    V = np.load(f"{out}/items.npy")
    item_index = {v.strip(): i for i, v in enumerate(open(f"{out}/item_ids.txt"))}
    user_index = {u.strip(): i for i, u in enumerate(open(f"{out}/user_ids.txt"))}
    def read(path):
        return {u: (l.split(",") if l else []) for u, l in (line.rstrip("\n").split("\t") for line in open(path))}
    a, b = read(f"{out}/implicit-top10.tsv"), read(vitrine_topk)
    exact = ties = 0
    for u, la in a.items():
        lb = b.get(u, [])
        if la == lb:
            exact += 1
            ties += 1
            continue
        scores = V @ U[user_index[u]]
        kth = min(scores[item_index[i]] for i in la)
        differing = set(la) ^ set(lb)
        if set(la) == set(lb) or all(abs(scores[item_index[i]] - kth) <= 1e-5 * max(1.0, abs(kth)) for i in differing):
            ties += 1
    return {"users": len(a), "exact": exact / len(a), "up_to_ties": ties / len(a)}


def metrics(d, topk_file, k):
    s = load_split(d)
    relevant = {}
    for u, v in s["test"]:
        relevant.setdefault(u, set()).add(v)
    scores = []
    with open(topk_file) as f:
        for line in f:
            u, items = line.rstrip("\n").split("\t")
            ranked = items.split(",") if items else []
            if u in relevant:
                scores.append(ndcg_recall(ranked, relevant[u], k))
    return {"ndcg": float(np.mean([x[0] for x in scores])), "recall": float(np.mean([x[1] for x in scores])),
            "precision": float(np.mean([x[2] for x in scores])), "users": len(scores)}


def implicit_scale(path, threads, iterations):
    """implicit ALS on a large TSV log (user, item, rating, ts): wall time of
    load + fit, fit alone, and this process's peak RSS."""
    import resource
    import pandas as pd
    import scipy.sparse as sp
    from implicit.als import AlternatingLeastSquares
    t0 = time.perf_counter()
    df = pd.read_csv(path, sep="\t", header=None, usecols=[0, 1], names=["u", "i"], dtype={"u": np.int64, "i": np.int64})
    users, uidx = np.unique(df["u"].to_numpy(), return_inverse=True)
    items, iidx = np.unique(df["i"].to_numpy(), return_inverse=True)
    del df
    m = sp.csr_matrix((np.ones(len(uidx), dtype=np.float32), (uidx.astype(np.int32), iidx.astype(np.int32))),
                      shape=(len(users), len(items)))
    m.data[:] = 1.0
    del uidx, iidx
    load = time.perf_counter() - t0
    model = AlternatingLeastSquares(factors=64, regularization=0.5, alpha=3.0, iterations=iterations,
                                    num_threads=threads, random_state=42, use_gpu=False)
    t1 = time.perf_counter()
    model.fit(m, show_progress=False)
    fit = time.perf_counter() - t1
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"load_seconds": load, "fit_seconds": fit, "total_seconds": time.perf_counter() - t0,
            "max_rss_mb": rss_mb, "interactions": int(m.nnz), "users": len(users), "items": len(items)}


def measure_child(args):
    """Runs a command; returns its wall time and peak RSS (this wrapper runs
    only that one child, so RUSAGE_CHILDREN is exactly its peak)."""
    import resource, subprocess
    t = time.perf_counter()
    subprocess.run(args, check=True)
    return {"total_seconds": time.perf_counter() - t,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "measure":
        out = measure_child(args)
    elif cmd == "implicit-scale":
        out = implicit_scale(args[0], int(args[1]), int(args[2]))
    elif cmd == "surprise-kfold":
        out = surprise_kfold(args[0])
    elif cmd == "ease-numpy":
        out = ease_numpy(args[0], int(args[1]), float(args[2]))
    elif cmd == "implicit-export":
        out = implicit_export(args[0], args[1])
    elif cmd == "compare-topk":
        out = compare_topk(args[0], args[1])
    elif cmd == "implicit-als":
        out = implicit_als(args[0], int(args[1]))
    else:
        out = metrics(args[0], args[1], int(args[2]))
    print(json.dumps(out))
