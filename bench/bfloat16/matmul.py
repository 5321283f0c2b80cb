"""Batched matrix product throughput, float32 against bfloat16, one thread (session 16).

Usage: python bench/bfloat16/matmul.py  (prints GFLOP/s; medians of 30 calls)
"""

import time

import torch


def median_time(fn, n: int = 30) -> float:
    """Median wall time of ``fn()`` over ``n`` calls after 5 warm-up calls."""
    for _ in range(5):
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[n // 2]


if __name__ == "__main__":
    torch.set_num_threads(1)
    for m, k, n in [(512, 384, 384), (1536, 384, 384), (1536, 130, 384)]:
        a, b = torch.randn(2, m, k), torch.randn(2, k, n)
        ab, bb = a.bfloat16(), b.bfloat16()
        flops = 2 * 2 * m * k * n
        t32 = median_time(lambda: torch.bmm(a, b))  # noqa: B023
        t16 = median_time(lambda: torch.bmm(ab, bb))  # noqa: B023
        print(f"(2, {m}, {k}) x (2, {k}, {n}): float32 {flops / t32 / 1e9:.0f} GFLOP/s, "
              f"bfloat16 {flops / t16 / 1e9:.0f} GFLOP/s ({t32 / t16:.1f}x)")
