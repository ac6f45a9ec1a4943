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


def check(value: float, needs: float, strict: bool = False) -> dict:
    """One acceptance line of a result JSON: the value, the bound it must reach (``strict``: exceed),
    and whether it does."""
    return {"value": value, "needs": needs, "strict": strict, "pass": bool(value > needs if strict else value >= needs)}


def write_json(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")


def plot(results: list[ModelResult], result: dict, path: Path, window: int = 2000) -> None:
    """Left: each model's recall@10 and NDCG@10 with 95% intervals. Middle: moving-window recall@10
    over the scored stream. Right: recall@10 against the micro-batch size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title = result["dataset"]["name"].split(" (")[0]
    ablations = set(result["ablations"])
    fig, (bars, ax, ax2) = plt.subplots(1, 3, figsize=(20, 5.5), gridspec_kw={"width_ratios": [1.2, 2, 1]})
    names = list(result["models"])
    y = np.arange(len(names))
    for offset, (measure, color) in enumerate((("recall@10", "tab:blue"), ("ndcg@10", "tab:orange"))):
        ci = result["confidence"]["intervals"][measure]
        mean = np.array([ci[n]["mean"] for n in names])
        err = np.array([[ci[n]["mean"] - ci[n]["low"] for n in names], [ci[n]["high"] - ci[n]["mean"] for n in names]])
        bars.barh(y + 0.2 - 0.4 * offset, mean, 0.4, xerr=err, color=color, alpha=0.8, label=measure, capsize=2)
    bars.set_yticks(y, [f"{n} (ablation)" if n in ablations else n for n in names], fontsize=8)
    bars.invert_yaxis()
    bars.set_title(f"{title}: per-event protocol, 95% intervals (bootstrap over users)", fontsize=9)
    bars.grid(alpha=0.3, axis="x")
    bars.legend(fontsize=8)
    for res in results:
        hits = np.concatenate(res.hits)
        start = min(window // 4, len(hits) - 1)  # skip the first, very noisy, short windows
        x = np.arange(start, len(hits))
        ax.plot(x, moving_average(hits, window)[start:], label=f"{res.name} ({hits.mean():.3f})",
                lw=2.0 if res.name == "polyrec" else 1.0, ls="--" if res.name in ablations else "-")
    ax.set_xlabel("scored event (click or purchase after warm-up)")
    ax.set_ylabel(f"recall@10, trailing {window} events")
    ax.set_title(f"Prequential recall@10 on {title} (per-event protocol)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    sweep = result["batch_size_sweep"]
    sizes = sorted(sweep, key=int)
    for name in names:
        ax2.plot([int(b) for b in sizes], [sweep[b][name]["recall@10"] for b in sizes], marker="o", label=name,
                 ls="--" if name in ablations else "-")
    ax2.set_xscale("log")
    ax2.set_xlabel("micro-batch size (events scored before the batch is learned)")
    ax2.set_ylabel("recall@10")
    ax2.set_title("Freshness vs accuracy")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    ci = result["confidence"]["intervals"]
    table = Table(title=f"Prequential evaluation, {result['dataset']['name']} (per-event protocol; "
                        "95% intervals: bootstrap over users)")
    for col in ("model", "recall@10", "95% interval", "ndcg@10", "95% interval", "scored", "learn ev/s (per event)"):
        table.add_column(col, justify="right" if col != "model" else "left")
    for name, m in result["models"].items():
        r, n = ci["recall@10"][name], ci["ndcg@10"][name]
        label = f"{name} (ablation)" if name in result["ablations"] else name
        table.add_row(label, f"{m['recall@10']:.4f}", f"{r['low']:.4f}-{r['high']:.4f}", f"{m['ndcg@10']:.4f}",
                      f"{n['low']:.4f}-{n['high']:.4f}", str(m["scored_events"]), f"{m['learn_events_per_s']:,.0f}")
    console = Console(width=max(Console().width, 120))
    console.print(table)
    sweep = result["batch_size_sweep"]
    t3 = Table(title="recall@10 by micro-batch size")
    t3.add_column("model")
    for b in sweep:
        t3.add_column(f"batch {b}", justify="right")
    for name in result["models"]:
        t3.add_row(name, *(f"{sweep[b][name]['recall@10']:.4f}" for b in sweep))
    console.print(t3)
    tp = result["throughput"]
    t2 = Table(title=f"Learning throughput, batches of {tp['batch_size']}, dim {tp['dim']} (median of {tp['repeats']})")
    for col in ("contender", "events/s", "x River learn_one"):
        t2.add_column(col, justify="right" if col != "contender" else "left")
    for name, v in tp["events_per_s_median"].items():
        t2.add_row(name, f"{v:,.0f}", f"{tp['ratio_to_river_learn_one'][name]:.2f}")
    console.print(t2)
    for name, d in result["confidence"]["against_best_peer"].items():
        diff = d["difference"]
        console.print(f"polyrec vs best peer on {name} ({d['best_peer']}): x{d['ratio']:.3f}, difference "
                      f"{diff['mean']:+.4f} (95% interval {diff['low']:+.4f} to {diff['high']:+.4f})")
    for check, ok in result["acceptance"].items():
        verdict = f"[{'green' if ok['pass'] else 'red'}]{'PASS' if ok['pass'] else 'FAIL'}[/]"
        console.print(f"{verdict} {check}: {ok['value']:.4f} (needs {'>' if ok.get('strict') else '>='} {ok['needs']})")
