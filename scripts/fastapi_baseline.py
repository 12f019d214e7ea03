#!/usr/bin/env python3
"""What a team would otherwise hand-roll: FastAPI + numpy brute force.

Serves POST /v1/models/{model}/recommend {"user": "user-N", "k": 10} with
the same answer shape as vitrine-server, scoring every item by a float32
dot product (numpy/BLAS) and taking the top k with argpartition. Factors are
random with the benchmark model's shape (the arithmetic, not the values, is
what costs). Run with one uvicorn worker:

    python scripts/fastapi_baseline.py --items 100000 --dim 64 --users 10000 --port 18098
"""
import argparse

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

ap = argparse.ArgumentParser()
ap.add_argument("--items", type=int, default=100_000)
ap.add_argument("--dim", type=int, default=64)
ap.add_argument("--users", type=int, default=10_000)
ap.add_argument("--port", type=int, default=18098)
a = ap.parse_args()

rng = np.random.default_rng(0)
ITEMS = rng.standard_normal((a.items, a.dim), dtype=np.float32)
USERS = rng.standard_normal((a.users, a.dim), dtype=np.float32)
IDS = [f"SKU-{i:06d}" for i in range(a.items)]
app = FastAPI()


class Request(BaseModel):
    user: str
    k: int = 10


@app.post("/v1/models/{model}/recommend")
def recommend(model: str, req: Request):
    try:
        u = int(req.user.rsplit("-", 1)[1])
        vec = USERS[u]
    except (IndexError, ValueError):
        raise HTTPException(404, "unknown user")
    scores = ITEMS @ vec
    top = np.argpartition(-scores, req.k)[: req.k]
    top = top[np.argsort(-scores[top])]
    return {"model": model, "version": 1, "items": [{"id": IDS[i], "score": float(scores[i])} for i in top]}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=a.port, workers=1, log_level="warning", access_log=False)
