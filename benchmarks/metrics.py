"""`drsta.metrics.evaluate` at MARS size against a naive per-query implementation of the same protocol.

    python benchmarks/metrics.py [--repeats 3]

MARS test split: 1,980 queries × 9,330 gallery tracklets, 625 identities, 6 cameras (random distances).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from drsta.metrics import evaluate


def naive_evaluate(dist, q_pids, g_pids, q_camids, g_camids, max_rank=20):
    """The protocol one query at a time (a Python transcription of the usual eval_market1501)."""
    all_cmc, all_ap = [], []
    for q in range(len(q_pids)):
        order = np.argsort(dist[q], kind="stable")
        keep = ~((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        matches = (g_pids[order] == q_pids[q])[keep]
        if not matches.any():
            continue
        cmc = matches.cumsum().clip(max=1)
        all_cmc.append(cmc[:max_rank])
        hits = np.flatnonzero(matches)
        all_ap.append(np.mean(np.arange(1, len(hits) + 1) / (hits + 1)))
    return np.mean(all_cmc, axis=0), float(np.mean(all_ap))


def mars_sized_problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    g_pids = rng.integers(0, 625, 9330)
    g_camids = rng.integers(0, 6, 9330)
    q_pids = rng.choice(g_pids, 1980)
    q_camids = rng.integers(0, 6, 1980)
    dist = rng.random((1980, 9330), dtype=np.float32)
    return dist, q_pids, g_pids, q_camids, g_camids


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    problem = mars_sized_problem()
    fast_cmc, fast_map = evaluate(*problem)
    naive_cmc, naive_map = naive_evaluate(*problem)
    assert np.allclose(fast_cmc, naive_cmc) and np.isclose(fast_map, naive_map), "implementations disagree"
    fast = best_time(lambda: evaluate(*problem), args.repeats)
    naive = best_time(lambda: naive_evaluate(*problem), max(1, args.repeats // 3))
    print("evaluate() at MARS size: 1,980 queries × 9,330 gallery, 625 ids, 6 cameras (best of runs)")
    print("| implementation          | seconds | speed-up |\n|---|---|---|")
    print(f"| naive per-query (numpy) | {naive:7.3f} | 1.0× |")
    print(f"| drsta.metrics.evaluate  | {fast:7.3f} | {naive / fast:.1f}× |")


if __name__ == "__main__":
    main()
