"""Writing the evaluation: JSON, a PNG of moving-window recall, and a terminal table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from polyrec.evaluation.protocol import ModelResult


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` values (shorter at the start)."""
    c = np.cumsum(np.r_[0.0, x])
    n = np.minimum(np.arange(1, len(x) + 1), window)
    return (c[1:] - c[np.arange(1, len(x) + 1) - n]) / n


def check(value: float, needs: float) -> dict:
    """One acceptance line of a result JSON: the value, the bound it must reach, and whether it does."""
    return {"value": value, "needs": needs, "pass": bool(value >= needs)}


def write_json(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")


def plot(results: list[ModelResult], sweep: dict[int, dict[str, float]], path: Path, window: int = 2000) -> None:
    """Left: moving-window recall@10 over the scored stream. Right: recall@10 vs micro-batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [2, 1]})
    for res in results:
        hits = np.concatenate(res.hits)
        start = min(window // 4, len(hits) - 1)  # skip the first, very noisy, short windows
        x = np.arange(start, len(hits))
        ax.plot(x, moving_average(hits, window)[start:], label=f"{res.name} ({hits.mean():.3f})", lw=1.4)
    ax.set_xlabel("scored event (click or purchase after warm-up)")
    ax.set_ylabel(f"recall@10, trailing {window} events")
    ax.set_title("Prequential recall@10 on MovieLens-100K (per-event protocol)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    sizes = sorted(sweep)
    for name in (r.name for r in results):
        ax2.plot(sizes, [sweep[b][name] for b in sizes], marker="o", label=name)
    ax2.set_xscale("log")
    ax2.set_xlabel("micro-batch size (events scored before the batch is learned)")
    ax2.set_ylabel("recall@10")
    ax2.set_title("Freshness vs accuracy")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Prequential evaluation, MovieLens-100K (per-event protocol)")
    for col in ("model", "recall@10", "ndcg@10", "scored", "learn ev/s (per event)"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for name, m in result["models"].items():
        table.add_row(name, f"{m['recall@10']:.4f}", f"{m['ndcg@10']:.4f}", str(m["scored_events"]),
                      f"{m['learn_events_per_s']:,.0f}")
    console = Console()
    console.print(table)
    tp = result["throughput"]
    t2 = Table(title=f"Learning throughput, batches of {tp['batch_size']}, dim {tp['dim']} (median of {tp['repeats']})")
    for col in ("contender", "events/s", "x River learn_one"):
        t2.add_column(col, justify="right" if col != "contender" else "left")
    for name, v in tp["events_per_s_median"].items():
        t2.add_row(name, f"{v:,.0f}", f"{tp['ratio_to_river_learn_one'][name]:.2f}")
    console.print(t2)
    for check, ok in result["acceptance"].items():
        verdict = f"[{'green' if ok['pass'] else 'red'}]{'PASS' if ok['pass'] else 'FAIL'}[/]"
        console.print(f"{verdict} {check}: {ok['value']:.3f} (needs >= {ok['needs']})")
