"""Draws the ratios of a berth-bench result (JSON) as a horizontal bar chart (PNG).

Usage: chart.py RESULT.json OUT.png. A bar is how many times better Berth is than
dockerd on that figure (right of the line at 1 is better); goals are marked.
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(src, out):
    doc = json.load(open(src))
    # Berth against dockerd only (the settings figures compare Berth with itself).
    rows = [f for f in doc["figures"] if f.get("ratio") and f.get("engines") == ["berth", "dockerd"]]
    names = [f["figure"] for f in rows][::-1]
    ratios = [f["ratio"] for f in rows][::-1]
    goals = [f.get("goal") for f in rows][::-1]
    fig, ax = plt.subplots(figsize=(11, 0.42 * len(rows) + 1.5))
    colors = ["#2a9d8f" if r >= 1 else "#e76f51" for r in ratios]
    ax.barh(names, ratios, color=colors)
    for i, (r, g) in enumerate(zip(ratios, goals)):
        ax.text(r, i, f" {r:.2f}x", va="center", fontsize=8)
        if g:
            ax.plot([g, g], [i - 0.4, i + 0.4], color="black", linewidth=1.5)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("times better than dockerd (log scale; black ticks are goals)")
    ax.set_title(f"Berth vs dockerd, {doc.get('when', '')}")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
