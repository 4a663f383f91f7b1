#!/usr/bin/python3
"""Summarises bench/accuracy/run.sh's results: per variant, each side's mean and standard
deviation of test top-1 and top-3 over seeds, the difference in standard errors, the smallest
drop the run could have seen, a verdict, and the speed of both sides.

  stats.py RESULTS.tsv [MORE.tsv ...]

Several files (runs with other seeds, from run.sh --first-seed) are pooled; a (variant, side,
seed) that occurs twice is an error. RESULTS.tsv: a header line, then one line per job:
  variant side seed top1 top3 img_per_s wall_s [head_top1]
(side: "ours" or "peer"; img_per_s and head_top1 may be "-"; head_top1 is the test top-1 after
the head phase of the phases variant). Exit status 0 whatever the verdict: the
harness reports, people decide.
"""
import csv
import math
import sys

# The bar: ours at or above the peer's mean top-1 minus one standard error.
# A difference is called significant beyond 2 standard errors (about 95% two-sided).
SIGNIFICANT_SE = 2.0


def mean_sd(values):
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else float("nan")
    return mean, sd


def fmt_pct(mean, sd):
    return f"{100 * mean:.2f} ± {100 * sd:.2f}" if not math.isnan(sd) else f"{100 * mean:.2f}"


def main(paths):
    rows, seen = [], {}
    for path in paths:
        with open(path) as f:
            for r in csv.DictReader(f, delimiter="\t"):
                key = (r["variant"], r["side"], r["seed"])
                if key in seen:
                    print(f"stats: {path}: {' '.join(key)} is also in {seen[key]}; "
                          "expected each seed once", file=sys.stderr)
                    return 1
                seen[key] = path
                rows.append(r)
    if not rows:
        print(f"stats: {' '.join(paths)} hold no results", file=sys.stderr)
        return 1
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    for variant in variants:
        sides = {side: [r for r in rows if r["variant"] == variant and r["side"] == side]
                 for side in ("ours", "peer")}
        print(f"## {variant}")
        print()
        print("| side | seeds | test top-1 % (mean ± sd) | test top-3 % | per seed top-1 % "
              "| after head top-1 % | train img/s (median) | wall s (mean) |")
        print("|---|---:|---:|---:|---|---:|---:|---:|")
        summary = {}
        for side, results in sides.items():
            if not results:
                continue
            top1 = [float(r["top1"]) for r in results]
            top3 = [float(r["top3"]) for r in results]
            speed = sorted(float(r["img_per_s"]) for r in results if r["img_per_s"] != "-")
            wall = [float(r["wall_s"]) for r in results]
            summary[side] = (top1, speed, wall)
            m1, s1 = mean_sd(top1)
            m3, s3 = mean_sd(top3)
            median_speed = f"{speed[len(speed) // 2]:.0f}" if speed else "-"
            heads = [float(r["head_top1"]) for r in results if r.get("head_top1") not in (None, "", "-")]
            head = fmt_pct(*mean_sd(heads)) if heads else "-"
            print(f"| {side} | {len(results)} | {fmt_pct(m1, s1)} | {fmt_pct(m3, s3)} | "
                  f"{', '.join(f'{100 * v:.2f}' for v in top1)} | {head} | {median_speed} | "
                  f"{sum(wall) / len(wall):.0f} |")
        print()
        if set(summary) != {"ours", "peer"}:
            print("verdict: only one side ran; nothing to compare\n")
            continue
        (o, o_speed, o_wall), (p, p_speed, p_wall) = summary["ours"], summary["peer"]
        if len(o) < 2 or len(p) < 2:
            print("verdict: at least 2 seeds per side are needed for standard errors\n")
            continue
        mo, so = mean_sd(o)
        mp, sp = mean_sd(p)
        se_o, se_p = so / math.sqrt(len(o)), sp / math.sqrt(len(p))
        se_diff = math.sqrt(se_o ** 2 + se_p ** 2)
        diff = mo - mp
        z = diff / se_diff if se_diff > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
        print(f"- top-1 difference ours - peer: {100 * diff:+.2f} points, "
              f"{z:+.2f} standard errors (SE of the difference {100 * se_diff:.2f} points; "
              f"ours SE {100 * se_o:.2f}, peer SE {100 * se_p:.2f})")
        print(f"- smallest drop this run resolves ({SIGNIFICANT_SE:g} SE): "
              f"{100 * SIGNIFICANT_SE * se_diff:.2f} points")
        bar = mp - se_p
        meets = mo >= bar
        print(f"- bar (peer mean - 1 peer SE): {100 * bar:.2f}%; ours {100 * mo:.2f}%: "
              f"{'MET' if meets else 'NOT MET'}")
        if z <= -SIGNIFICANT_SE:
            verdict = "ours learns WORSE than the peer (significant)"
        elif z >= SIGNIFICANT_SE:
            verdict = "ours learns better than the peer (significant)"
        else:
            verdict = "no significant difference"
        print(f"- verdict: {verdict}; bar {'met' if meets else 'not met'}")
        if o_speed and p_speed:
            ratio = sorted(o_speed)[len(o_speed) // 2] / sorted(p_speed)[len(p_speed) // 2]
            print(f"- speed: ours / peer train img/s (medians) {ratio:.2f}x; wall time "
                  f"peer / ours {sum(p_wall) / sum(o_wall):.2f}x")
        print()
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
