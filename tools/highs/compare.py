#!/usr/bin/env python3
"""Clear a step-curve market file with HiGHS (as a linear program) and with `bcte clear`.

Usage:
    compare.py MARKET.json [--bcte PATH] [--runs N] [--threads T]

The linear program is the welfare maximisation the market engine solves, in kW and
currency/MWh:

    maximise   sum over steps k of price_k * y_k / 1000            (value of each step taken)
             - cap / 1000 * sum over nodes of shed_n + floor / 1000 * sum of spill_n
             + constant (the welfare of every bid at its lowest power, see below)
    such that, at every node n,
               sum of its bids' (p_min + sum of their y_k) - shed_n + spill_n
             + sum of its children's flows f_c - f_n = 0        (f_root absent)
               0 <= y_k <= height of step k,  -export_n <= f_n <= import_n,
               0 <= shed_n <= demand of n's bids at the cap,
               0 <= spill_n <= must-run generation of n's bids.

A bid's curve is its lowest power p_min (at the cap) plus its vertical steps, each a variable
worth its price per kW. The constant is each bid's welfare at p_min: the area under its inverse
curve from 0 to p_min, with demand that holds at every price counted at the cap and generation
that runs at every price at the floor (docs/market-rules.md, MR-4). Only HiGHS's solve is timed
(`Highs.run`), not reading the file or building the model; `bcte clear` reports the clearing alone
(stats.clear_ms). Each side runs `--runs` times and the median is reported.

Requires `pip install highspy numpy`.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

import highspy
import numpy as np

INF = highspy.kHighsInf


def bid_steps(bid):
    """The bid's lowest power, its steps (price, height) and its welfare at the lowest power."""
    points = bid["curve"]
    steps = []
    for (p0, q0), (p1, q1) in zip(points, points[1:]):
        if q0 == q1:
            continue
        if p0 != p1:
            sys.exit(f"bid {bid['id']!r}: sloped segment; compare.py handles step curves only")
        steps.append((p0, q0 - q1))
    return points[-1][1], points[0][1], steps


def welfare_at_lowest(p_min, p_max, steps, floor, cap):
    """Area under the inverse curve from 0 to p_min (kW * currency/MWh)."""
    if p_min >= 0:
        return p_min * cap
    # Powers in (p_min, 0) are taken at the prices of the steps that cover them, or at the
    # floor above p_max; the area from 0 down to p_min is minus their integral.
    area = 0.0
    level = p_max
    for price, height in steps:
        top, bottom = level, level - height
        overlap = max(0.0, min(top, 0.0) - max(bottom, p_min))
        area += price * overlap
        level = bottom
    if p_max < 0:
        area += floor * (0.0 - p_max)
    return -area


def build(market):
    floor = market.get("price_floor", -500.0)
    cap = market.get("price_cap", 3000.0)
    nodes = market["nodes"]
    index = {n["id"]: i for i, n in enumerate(nodes)}
    n = len(nodes)
    rhs = np.zeros(n)
    shed_cap = np.zeros(n)
    spill_cap = np.zeros(n)
    constant = 0.0
    cost, lower, upper, rows, values = [], [], [], [], []
    for bid in market.get("bids", []):
        row = index[bid["node"]]
        p_min, p_max, steps = bid_steps(bid)
        rhs[row] -= p_min
        shed_cap[row] += max(0.0, p_min)
        spill_cap[row] += max(0.0, -p_max)
        constant += welfare_at_lowest(p_min, p_max, steps, floor, cap) / 1000.0
        for price, height in steps:
            cost.append(price / 1000.0)
            lower.append(0.0)
            upper.append(height)
            rows.append([row])
            values.append([1.0])
    for i, node in enumerate(nodes):
        cost.append(-cap / 1000.0)
        lower.append(0.0)
        upper.append(shed_cap[i])
        rows.append([i])
        values.append([-1.0])
        cost.append(floor / 1000.0)
        lower.append(0.0)
        upper.append(spill_cap[i])
        rows.append([i])
        values.append([1.0])
        parent = node.get("parent")
        if parent is not None:
            imp = node.get("import_limit_kw")
            exp = node.get("export_limit_kw")
            cost.append(0.0)
            lower.append(-exp if exp is not None else -INF)
            upper.append(imp if imp is not None else INF)
            rows.append([i, index[parent]])
            values.append([-1.0, 1.0])

    lp = highspy.HighsLp()
    lp.num_col_ = len(cost)
    lp.num_row_ = n
    lp.col_cost_ = np.array(cost)
    lp.col_lower_ = np.array(lower)
    lp.col_upper_ = np.array(upper)
    lp.row_lower_ = rhs
    lp.row_upper_ = rhs
    lp.sense_ = highspy.ObjSense.kMaximize
    starts = np.zeros(len(rows) + 1, dtype=np.int32)
    starts[1:] = np.cumsum([len(r) for r in rows])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = starts
    lp.a_matrix_.index_ = np.array([i for r in rows for i in r], dtype=np.int32)
    lp.a_matrix_.value_ = np.array([v for vs in values for v in vs])
    return lp, constant


def solve_highs(lp, threads):
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", threads)
    h.passModel(lp)
    start = time.perf_counter()
    h.run()
    elapsed = time.perf_counter() - start
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        sys.exit(f"HiGHS: {h.modelStatusToString(status)}")
    return elapsed * 1000.0, h.getInfo().objective_function_value


def run_bcte(bcte, path):
    out = subprocess.run([bcte, "clear", path], check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    return result["stats"]["clear_ms"], result["welfare"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("market")
    parser.add_argument("--bcte", default="target/release/bcte", help="path to the bcte binary")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="HiGHS threads (default 1, like bcte)")
    args = parser.parse_args()

    with open(args.market) as f:
        market = json.load(f)
    lp, constant = build(market)

    ours = [run_bcte(args.bcte, args.market) for _ in range(args.runs)]
    theirs = [solve_highs(lp, args.threads) for _ in range(args.runs)]
    ours_ms = statistics.median(ms for ms, _ in ours)
    highs_ms = statistics.median(ms for ms, _ in theirs)
    ours_welfare = ours[0][1]
    highs_welfare = theirs[0][1] + constant
    gap = abs(ours_welfare - highs_welfare) / max(1.0, abs(highs_welfare))

    bids = len(market.get("bids", []))
    print(f"| bids | nodes | LP columns | bcte ms | HiGHS ms | speed-up | bcte welfare | HiGHS welfare | relative gap |")
    print(f"|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {bids} | {len(market['nodes'])} | {lp.num_col_} | {ours_ms:.3f} | {highs_ms:.1f} | "
        f"{highs_ms / ours_ms:.0f}x | {ours_welfare:.6f} | {highs_welfare:.6f} | {gap:.1e} |"
    )
    if gap > 1e-6:
        sys.exit(f"welfare differs by {gap:.1e} (relative)")


if __name__ == "__main__":
    main()
