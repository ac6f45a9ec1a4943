"""Writing the cold-start evaluation: a PNG (recall per language, parity, alignment) and a table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CONTENDERS = ("popularity", "new-item-popularity", "new-item-popularity-recent", "random-init", "young", "projection")


def _recall(result: dict, lang: str, contender: str) -> float:
    name = f"projection-{lang}" if contender == "projection" else contender
    return result["contenders"][name]["recall@10"]


def plot(result: dict, path: Path) -> None:
    """Left: recall@10 per language and contender. Middle: parity with English. Right: alignment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.8), gridspec_kw={"width_ratios": [3, 2, 1]})
    _recall_panel(ax, result)
    _parity_panel(ax2, result)
    _alignment_panel(ax3, result["alignment"])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _recall_panel(ax, result: dict) -> None:
    """Recall@10 per language of the new items' text and contender, with the control and ceilings."""
    langs = list(result["per_language"])
    x, width = np.arange(len(langs)), 0.14
    for n, contender in enumerate(CONTENDERS):
        values = [_recall(result, lang, contender) for lang in langs]
        bars = ax.bar(x + (n - 2.5) * width, values, width, label=contender)
        if contender == "projection":
            ax.bar_label(bars, fmt="%.3f", fontsize=7)
    control = result["contenders"].get("projection-en-shuffled")
    if control:
        ax.axhline(control["recall@10"], color="black", ls=":", lw=1.2, label="projection, shuffled texts (control)")
    ax.axhline(2 * result["contenders"]["random-init"]["recall@10"], color="red", ls="--", lw=1,
               label="target: 2 x random-init")
    ceiling = result["contenders"].get("ceiling-final-vector")
    if ceiling:
        ax.axhline(ceiling["recall@10"], color="tab:green", ls="-.", lw=1.2,
                   label="start = final learned vector (leaky ceiling)")
    p = result["protocol"]
    ax.set_xticks(x, langs)
    ax.set_xlabel("language of the new items' text")
    ax.set_ylabel("recall@10")
    ax.set_title(f"New items ({p['new_items']}), their first {p['first_events']} events after the warm-up")
    ax.set_ylim(0, 1.7 * max(r["recall@10"] for r in result["contenders"].values()))
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    ax.grid(axis="y", alpha=0.3)


def _parity_panel(ax, result: dict) -> None:
    """Per language: cold-start recall and exposure relative to English (the 0.95 bound), with the
    English re-encoded reference, and, as information, the share of a new item's own consumers its
    audience holds and overlap@10 with English."""
    others = [lang for lang in result["per_language"] if lang != "en"]
    rows = [result["per_language"][lang] for lang in others]
    x = np.arange(len(others))
    ax.bar(x - 0.27, [r["recall_parity_vs_en"] for r in rows], 0.27, color="tab:blue", label="cold-start recall@10")
    ax.bar(x, [r["exposure"]["parity_vs_en"] for r in rows], 0.27, color="tab:orange",
           label="exposure before the first event")
    ax.bar(x + 0.27, [r["exposure"]["consumers_parity_vs_en"] for r in rows], 0.27, color="tab:green",
           label="its own consumers reached (information)")
    for bars in ax.containers:
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.axhline(result["exposure_reference"]["parity_vs_en"], color="black", ls=":", lw=1.2,
               label="exposure: English re-encoded in other batches")
    ax.axhline(0.95, color="red", ls="--", lw=1, label="bound 0.95")
    ax.plot(x, [r["overlap@10_vs_en"] for r in rows], "D", color="tab:purple", ms=5,
            label="overlap@10 with English (information)")
    ax.set_xticks(x, others)
    ax.set_ylim(0, 1.75)
    ax.set_title("Parity with English")
    ax.set_ylabel("ratio to English; overlap")
    ax.legend(fontsize=6, loc="upper left", ncol=2)


def _alignment_panel(ax, a: dict) -> None:
    """Top-1 retrieval of real title pairs, both ways, all pairs and the translated ones."""
    sub = a["translated_subset"]
    ax.bar([0, 1], [a["top1_en_to_other"], a["top1_other_to_en"]], 0.4, color="tab:gray",
           label=f"all {a['pairs']} pairs")
    ax.bar([0.4, 1.4], [sub["top1_en_to_other"], sub["top1_other_to_en"]], 0.4, color="tab:olive",
           label=f"{sub['pairs']} translated pairs")
    for bars in ax.containers:
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks([0.2, 1.2], ["en→other", "other→en"])
    ax.axhline(0.85, color="red", ls="--", lw=1)  # the target on the translated pairs
    ax.set_ylim(0, 1.05)
    ax.set_title("Title pairs: top-1 retrieval")
    ax.legend(fontsize=7, loc="lower right")


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    p = result["protocol"]
    table = Table(title=f"Cold start on {result['dataset']['name']}: {p['new_items']} new items, "
                        f"first {p['first_events']} "
                        f"events after the warm-up, batches of {p['batch_size']}")
    for col in ("lang", "proj r@10", "proj ndcg", "rand r@10", "young r@10", "new-pop r@10", "recent new-pop",
                "proj/rand", "whole stream",
                "recall parity", "reach", "exposure parity", "consumers reached", "consumers parity", "overlap",
                "genres@1", "scored"):
        table.add_column(col, justify="left" if col == "lang" else "right")
    random, young, new_pop, recent_pop = (result["contenders"][n] for n in (
        "random-init", "young", "new-item-popularity", "new-item-popularity-recent"))
    for lang, row in result["per_language"].items():
        proj = row["projection"]
        whole = proj["whole_stream"]["recall@10"] / max(random["whole_stream"]["recall@10"], 1e-12)
        table.add_row(lang, f"{proj['recall@10']:.4f}", f"{proj['ndcg@10']:.4f}", f"{random['recall@10']:.4f}",
                      f"{young['recall@10']:.4f}", f"{new_pop['recall@10']:.4f}", f"{recent_pop['recall@10']:.4f}",
                      f"{row['ratio_to_random']:.2f}", f"{whole:.2f}",
                      f"{row['recall_parity_vs_en']:.3f}", f"{row['exposure']['users_reached_per_item']:.4f}",
                      f"{row['exposure']['parity_vs_en']:.3f}",
                      f"{row['exposure']['consumers_reached_per_item']:.4f}",
                      f"{row['exposure']['consumers_parity_vs_en']:.3f}",
                      *(("-", "-") if lang == "en"
                        else (f"{row['overlap@10_vs_en']:.3f}", f"{row['genre_lists_top1']:.3f}")),
                      str(proj["scored_events"]))
    console = Console(width=max(Console().width, 150))
    console.print(table)
    console.print("rand: no cold-start feature; young: random start, young items scored from their users; proj: "
                  "text start, young items and exploration (the worker's model); reach: share of users whose top-10 "
                  "a new item enters before its first event, mean over new items (final model); consumers reached: "
                  "share of a new item's own consumers in the stream among them (who it reaches, not how many); "
                  "overlap: mean top-10 overlap with English among the new items only; genres@1: share of the "
                  "catalogue's translated genre lists nearest their own English list; proj/rand: projection "
                  "recall@10 / random-init recall@10 (whole stream: the same with the warm-up's events, information); "
                  "new-pop: only the new items, ranked by their events so far (recent: among the last "
                  f"{result['protocol']['recent_window']} events; they know which items are new, so "
                  "they are references)")
    references = "; ".join(f"{name} {value:.3f}" for name, value in result["overlap_references"].items())
    console.print(f"overlap references, English vs English: {references}; exposure parity of English re-encoded "
                  f"in other batches: {result['exposure_reference']['parity_vs_en']:.3f}")
    overall = "; ".join(f"{name} {row['recall@10']:.4f} ({row['recall@10_vs_random-init']:.3f}x, 95% "
                        f"{row['recall@10_vs_random-init_95ci'][0]:.3f}-{row['recall@10_vs_random-init_95ci'][1]:.3f})"
                        for name, row in result["overall"].items())
    console.print(f"overall recall@10, every item's events (the cost of the cold-start features): {overall}")
    by_event = Table(title="recall@10 by the new item's event number, after the warm-up, then over the whole stream")
    buckets = list(random["recall@10_by_event"])
    for col in ["contender"] + [f"event {b}" for b in buckets] + ["whole r@10"] + [f"whole {b}" for b in buckets]:
        by_event.add_column(col, justify="left" if col == "contender" else "right")
    for name, summary in result["contenders"].items():
        whole = summary["whole_stream"]
        by_event.add_row(name, *(f"{summary['recall@10_by_event'][b]:.4f}" for b in buckets),
                         f"{whole['recall@10']:.4f}", *(f"{whole['recall@10_by_event'][b]:.4f}" for b in buckets))
    console.print(by_event)
    if "ceiling-final-vector" in result["contenders"]:
        ratios = ", ".join(f"{name} {result['contenders'][name]['recall@10'] / max(random['recall@10'], 1e-12):.2f}x"
                           for name in result["contenders"] if name.startswith("ceiling-"))
        console.print(f"leaky ceilings (new items start from what random-init learned for them by the end), "
                      f"recall@10 / random-init: {ratios}")
    a, sub = result["alignment"], result["alignment"]["translated_subset"]
    console.print(f"alignment, top-1 among {a['pairs']} real title pairs: en->other {a['top1_en_to_other']:.3f}, "
                  f"other->en {a['top1_other_to_en']:.3f}; the {sub['pairs']} translated pairs "
                  f"({', '.join(sub['languages'])}): {sub['top1_en_to_other']:.3f}, {sub['top1_other_to_en']:.3f}")
    console.print(f"projection: {result['projection']} (chosen on a validation split)")
    for check, ok in result["acceptance"].items():
        console.print(f"[{'green' if ok['pass'] else 'red'}]{'PASS' if ok['pass'] else 'FAIL'}[/] {check}: "
                      f"{ok['value']:.3f} (needs >= {ok['needs']})")
