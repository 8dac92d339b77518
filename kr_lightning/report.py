"""``python -m kr_lightning report``: results tables and figures built only from files the runs wrote.

Layout read: ``<runs>/<dataset>/seed<k>/<stage>/`` with ``run.json``, ``metrics.csv`` and ``test/test_metrics.json``
per classifier stage, and ``mia/mia.json`` for the privacy audit. Writes ``<out>/<name>.md``, ``<out>/<name>.json``
and ``<out>/<name>_accuracy.png``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from kr_lightning import artifacts
from kr_lightning.layout import dataset_names, seed_folders
from kr_lightning.records import is_archive
from kr_lightning.report_privacy import audit_folders, mia_rows, plot_privacy_utility, privacy_utility, stale_models
from kr_lightning.runs import read_json

ROWS = {
    "teacher": "Teacher (real data)",
    "student": "GKD student (soft labels, regeneration)",
    "student_hard_static": "hard labels, static set",
    "student_hard_regen": "hard labels, regeneration",
    "student_soft_static": "soft labels, static set",
}
DP_PREFIX = "teacher_dp_eps"  # DP-SGD teachers, one folder per privacy budget: teacher_dp_eps<epsilon>


def _dp_epsilon(stage: str) -> float:
    try:
        return float(stage.removeprefix(DP_PREFIX))
    except ValueError:
        return math.inf


def row_labels(stages: set[str] | list[str]) -> dict[str, str]:
    """The report's rows among ``stages``, in order: :data:`ROWS`, then DP-SGD teachers by increasing epsilon."""
    dp = sorted((s for s in stages if s.startswith(DP_PREFIX)), key=_dp_epsilon)
    return {s: label for s, label in ROWS.items() if s in stages} | {
        s: f"DP-SGD teacher, epsilon {s.removeprefix(DP_PREFIX)} (real data)" for s in dp
    }


def _gkd_seconds(run: Path) -> tuple[float, float]:
    """Total generation and labelling seconds logged by the GKD data module."""
    gen = label = 0.0
    path = run / "metrics.csv"
    if path.is_file():
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                gen += float(row.get("gkd/gen_seconds") or 0.0)
                label += float(row.get("gkd/label_seconds") or 0.0)
    return gen, label


def stage_result(run: Path) -> dict[str, Any] | None:
    """Test metrics and cost of one classifier run, or ``None`` when it has not been tested."""
    metrics_path = run / "test" / "test_metrics.json"
    if not metrics_path.is_file():
        return None
    tested = read_json(metrics_path)
    record = read_json(run / "run.json") if (run / "run.json").is_file() else {}
    gen, label = _gkd_seconds(run)
    wall = record.get("wall_seconds")
    return {
        "acc": tested["metrics"]["test/acc"],
        "auc": tested["metrics"]["test/auc"],
        "ckpt": tested["ckpt_path"],
        "wall_seconds": wall,
        "gen_seconds": gen,
        "gen_share": gen / wall if wall else None,
        "command": " ".join(record.get("command", [])),
        "source": str(metrics_path),
    }


def generator_sharing(runs: Path, dataset: str) -> str | None:
    """Which seeds' synthetic images come from which generator (a seed's ``generator`` folder may link another's)."""
    seeds = [seed / "generator" for seed in seed_folders(runs / dataset) if (seed / "generator").exists()]
    if not seeds:
        return None
    owners: dict[Path, list[str]] = {}
    for folder in seeds:
        owners.setdefault(folder.resolve(), []).append(folder.parent.name)
    parts = [f"`{target.parent.name}/generator` for {', '.join(names)}" for target, names in owners.items()]
    return f"Generators: {len(owners)} trained ({'; '.join(parts)})."


def collect(runs: Path, dataset: str) -> dict[str, Any]:
    """Every seed's results for ``dataset``."""
    seeds: dict[str, Any] = {}
    archived = is_archive(runs / dataset)
    for seed_dir in seed_folders(runs / dataset):
        names = [*ROWS, *(p.name for p in seed_dir.glob(f"{DP_PREFIX}*") if p.is_dir())]
        stages = {stage: r for stage in names if (r := stage_result(seed_dir / stage)) is not None}
        audits = {p.name: read_json(p / "mia.json") for p in audit_folders(seed_dir)}
        for name, audit in list(audits.items()):
            if not archived and (stale := stale_models(audit)):  # records were checked when they were archived
                print(f"report: left out {seed_dir / name}: {', '.join(stale)} changed since it was audited; rerun mia")
                del audits[name]
        if stages or audits:
            sources = {name: str(seed_dir / name / "mia.json") for name in audits}
            seeds[seed_dir.name] = {"stages": stages, "audits": audits, "audit_sources": sources}
    return seeds


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{mean(values):.3f} ± {stdev(values):.3f}"


def summary_rows(seeds: dict[str, Any]) -> list[dict[str, Any]]:
    """Per stage: mean / sd of test ACC and AUC over seeds, the paired gap to the teacher, cost."""
    rows = []
    for stage, label in row_labels({stage for d in seeds.values() for stage in d["stages"]}).items():
        per_seed = {s: d["stages"][stage] for s, d in seeds.items() if stage in d["stages"]}
        if not per_seed:
            continue
        gaps = [
            r["acc"] - seeds[s]["stages"]["teacher"]["acc"]
            for s, r in per_seed.items()
            if "teacher" in seeds[s]["stages"]
        ]
        walls = [r["wall_seconds"] for r in per_seed.values() if r["wall_seconds"]]
        shares = [r["gen_share"] for r in per_seed.values() if r["gen_share"] is not None]
        rows.append(
            {
                "stage": stage,
                "label": label,
                "seeds": sorted(per_seed),
                "acc": [r["acc"] for r in per_seed.values()],
                "auc": [r["auc"] for r in per_seed.values()],
                "gap": gaps if stage != "teacher" else [],
                "wall_seconds": mean(walls) if walls else None,
                "gen_share": mean(shares) if shares and stage != "teacher" else None,
                "sources": [r["source"] for r in per_seed.values()],
                "commands": [r["command"] for r in per_seed.values()],
            }
        )
    return rows


def plot_accuracy(path: Path, tables: dict[str, list[dict[str, Any]]]) -> None:
    """Grouped bars: test accuracy per stage and dataset (error bars = sd over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 2.4 * len(tables)), 3.6), constrained_layout=True)
    labels = row_labels({r["stage"] for rows in tables.values() for r in rows})
    width = 0.8 / len(labels)
    for i, stage in enumerate(labels):
        xs, ys, es = [], [], []
        for j, rows in enumerate(tables.values()):
            row = next((r for r in rows if r["stage"] == stage), None)
            if row:
                xs.append(j + i * width)
                ys.append(mean(row["acc"]))
                es.append(stdev(row["acc"]) if len(row["acc"]) > 1 else 0.0)
        ax.bar(xs, ys, width, yerr=es, label=labels[stage])
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tables))], list(tables))
    ax.set(ylabel="test accuracy", ylim=(0.5, 1.0))
    ax.legend(fontsize=7, loc="lower right")
    artifacts.save_figure(path, fig, dpi=120)
    plt.close(fig)


def report(
    *, runs: str = "runs", datasets: list[str] | None = None, out: str = "results", name: str = "results"
) -> Path:
    """Results tables and figures (markdown, JSON, accuracy plot) built from the run folders' own files.

    Writes ``<out>/<name>.md``, ``<out>/<name>.json`` and ``<out>/<name>_accuracy.png``.

    Args:
        runs: Run root (``<runs>/<dataset>/seed<k>/<stage>``).
        datasets: Datasets to include (default: every folder under ``runs``).
        out: Output folder.
        name: File stem.
    """
    root = Path(runs)
    names = datasets or dataset_names(root)
    tables, raw = {}, {}
    for dataset in names:
        raw[dataset] = collect(root, dataset)
        if raw[dataset]:
            tables[dataset] = summary_rows(raw[dataset])
    lines = [
        "# Knowledge Recycling results",
        "",
        "Test metrics on the real test split (mean ± sd over seeds); selection used the val split only.",
        "",
    ]
    for dataset, rows in tables.items():
        lines += [
            f"## {dataset}",
            "",
            "| model | seeds | test ACC | test AUC | gap to teacher (ACC) | wall s | generation share |",
            "|---|---|---|---|---|---|---|",
        ]
        sharing = generator_sharing(root, dataset)
        for r in rows:
            share = f"{r['gen_share']:.0%}" if r["gen_share"] is not None else "-"
            wall = f"{r['wall_seconds']:.0f}" if r["wall_seconds"] else "-"
            lines.append(
                f"| {r['label']} | {len(r['seeds'])} | {_fmt(r['acc'])} | {_fmt(r['auc'])} | {_fmt(r['gap'])} "
                f"| {wall} | {share} |"
            )
        lines += ["", *([sharing, ""] if sharing else []), "Commands and files:", ""]
        for r in rows:
            lines += [f"- {r['label']}: `{r['commands'][0]}` -> " + ", ".join(f"`{s}`" for s in r["sources"])]
        privacy_lines, points = privacy_utility(rows, raw[dataset])
        if points:
            figure = f"{name}_{dataset}_privacy_utility.png"
            plot_privacy_utility(Path(out) / figure, points)
            privacy_lines += [f"![privacy-utility]({figure})", ""]
        lines += ["", *privacy_lines, *mia_rows(raw[dataset])]
    folder = Path(out)
    if tables:
        plot_accuracy(folder / f"{name}_accuracy.png", tables)
        lines += [f"![accuracy]({name}_accuracy.png)", ""]
    else:
        lines += ["No finished runs found under " + str(root), ""]
    artifacts.write_json(folder / f"{name}.json", {"tables": tables, "runs": raw})
    path = artifacts.write_text(folder / f"{name}.md", "\n".join(lines))
    print("\n".join(lines))
    return path
