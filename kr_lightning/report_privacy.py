"""The report's privacy part: audit tables, and the privacy-utility table and figure (accuracy vs attack TPR).

Audits live beside the runs they attack: ``<seed_dir>/mia`` (the deployed teacher and GKD student) and
``<seed_dir>/mia_dp_eps<epsilon>`` (a DP-SGD teacher, ``mia --teacher_run=<seed_dir>/teacher_dp_eps<epsilon>
--student=false``). Each audited model gets one privacy-utility row: its test accuracy (mean over seeds, from the
results table) against the strongest attack's TPR at 1 % FPR on the deployed model (population: its train members
vs the clean test non-members) and, where the audit has canaries, on the canaries (pooled over the reference runs
taken as targets).
"""

from __future__ import annotations

import math
from pathlib import Path
from statistics import mean
from typing import Any

from kr_lightning import artifacts

DP_AUDIT_PREFIX = "mia_dp_eps"
TPR = "tpr_at_fpr_0.01"


def audit_folders(seed_dir: Path) -> list[Path]:
    """The audits of one seed folder: ``mia`` first, then the DP-SGD teachers' audits."""
    dp = sorted(seed_dir.glob(f"{DP_AUDIT_PREFIX}*"), key=lambda p: p.name)
    return [p for p in [seed_dir / "mia", *dp] if (p / "mia.json").is_file()]


def stale_models(audit: dict[str, Any]) -> list[str]:
    """The audited checkpoints that are gone or were re-trained since the audit (``mia.json``'s ``deployed``).

    Audits written before the checkpoints' digests were recorded cannot be checked and count as current.
    """
    deployed = audit.get("deployed", {})
    return [
        f"{name} ({d['ckpt']})"
        for name, d in deployed.items()
        if not Path(d["ckpt"]).is_file() or artifacts.file_digest(d["ckpt"]) != d["sha256"]
    ]


def audited_stage(audit_name: str, model: str) -> str:
    """The run folder (report row) a model of an audit belongs to: ``mia_dp_eps8.0`` / teacher -> teacher_dp_eps8.0."""
    if audit_name.startswith(DP_AUDIT_PREFIX):
        return "teacher_dp_eps" + audit_name.removeprefix(DP_AUDIT_PREFIX)
    return model


def strongest(attacks: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The attack with the highest TPR at 1 % FPR (ties: the higher AUC)."""
    name = max(attacks, key=lambda a: (attacks[a][TPR], attacks[a]["auc"]))
    return name, attacks[name]


def privacy_points(seeds: dict[str, Any]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per audited stage: the strongest attack of each seed's audit, on the population and on the canaries."""
    points: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for seed, data in seeds.items():
        for name, audit in data.get("audits", {}).items():
            for model, result in audit["models"].items():
                kind = model.split(",")[0]
                group = "canaries" if ", canaries," in model else "population" if "," not in model else None
                if group is None:
                    continue
                attack, m = strongest(result["attacks"])
                entry = {"seed": seed, "attack": attack, "tpr": m[TPR], "ci": m.get(f"{TPR}_ci"), "auc": m["auc"]}
                if group == "canaries":
                    entry["eps_lb"] = max(a.get("epsilon_lower_bound", 0.0) for a in result["attacks"].values())
                points.setdefault(audited_stage(name, kind), {}).setdefault(group, []).append(entry)
    return points


def _cell(entries: list[dict[str, Any]] | None) -> str:
    if not entries:
        return "-"
    parts = []
    for e in entries:
        ci = e["ci"] or [math.nan, math.nan]
        eps = f", epsilon >= {e['eps_lb']:.2f}" if "eps_lb" in e else ""
        parts.append(f"{e['tpr']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] ({e['attack']}, AUC {e['auc']:.3f}{eps}, {e['seed']})")
    return "; ".join(parts)


def privacy_utility(rows: list[dict[str, Any]], seeds: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """Markdown lines of the privacy-utility table and its data (one entry per audited row of ``rows``)."""
    points = privacy_points(seeds)
    data = []
    for row in rows:
        if row["stage"] in points:
            data.append({"label": row["label"], "acc": row["acc"], **points[row["stage"]]})
    if not data:
        return [], []
    lines = [
        "Privacy-utility (strongest attack by TPR at 1 % FPR, its 95 % CI, the attack, its AUC, on canaries the "
        "largest empirical epsilon lower bound over the attacks (Clopper-Pearson, threshold picked on the same "
        "scores), and the audit's seed):",
        "",
        "| model | test ACC (mean) | TPR @ 1% FPR, population | TPR @ 1% FPR, canaries |",
        "|---|---|---|---|",
    ]
    for d in data:
        lines.append(
            f"| {d['label']} | {mean(d['acc']):.3f} | {_cell(d.get('population'))} | {_cell(d.get('canaries'))} |"
        )
    return [*lines, ""], data


def plot_privacy_utility(path: Path, data: list[dict[str, Any]]) -> None:
    """Test accuracy against the strongest attack's TPR at 1 % FPR (filled: population, open: canaries)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 4.0), constrained_layout=True)
    for i, d in enumerate(data):
        color = f"C{i % 10}"
        for group, fill in (("population", color), ("canaries", "none")):
            for e in d.get(group, []):
                ci = e["ci"] or [e["tpr"], e["tpr"]]
                err = [[max(0.0, e["tpr"] - ci[0])], [max(0.0, ci[1] - e["tpr"])]]
                ax.errorbar(e["tpr"], mean(d["acc"]), xerr=err, fmt="o", mfc=fill, mec=color, ecolor=color)
        ax.plot([], [], "o", color=color, label=d["label"])
    ax.axvline(0.01, color="gray", lw=0.8, ls=":", label="chance (TPR = FPR = 1 %)")
    ax.set(xlabel="TPR at 1 % FPR (filled: population, open: canaries)", ylabel="test accuracy")
    ax.set_xscale("symlog", linthresh=0.01)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: never over a point
    artifacts.save_figure(path, fig, dpi=120)
    plt.close(fig)


def _with_ci(m: dict[str, Any], key: str, digits: int) -> str:
    """``value [low, high]`` of one audit metric (``[-]`` where the audit saved no interval)."""
    low, high = m.get(f"{key}_ci") or [math.nan, math.nan]
    return f"{m[key]:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def mia_rows(seeds: dict[str, Any]) -> list[str]:
    """Markdown lines of every privacy audit (one block per seed and audit)."""
    lines = []
    for seed, data in seeds.items():
        for name, audit in data.get("audits", {}).items():
            lines += [
                f"Privacy audit `{name}`, {seed} ({audit.get('note', '')}):",
                "",
                "| model | attack | AUC [95% CI] | TPR @ 1% FPR [95% CI] | TPR @ 0.1% FPR [95% CI] "
                "| members / non-members |",
                "|---|---|---|---|---|---|",
            ]
            for model, result in audit["models"].items():
                for attack, m in result["attacks"].items():
                    low = "" if m.get("tpr_at_fpr_0.001_resolvable", True) else " (not resolvable)"
                    lines.append(
                        f"| {model} | {attack} | {_with_ci(m, 'auc', 3)} | {_with_ci(m, TPR, 3)} "
                        f"| {_with_ci(m, 'tpr_at_fpr_0.001', 4)}{low} | {m.get('n_members', '-')} / "
                        f"{m['n_nonmembers']} |"
                    )
            lines += ["", f"Source: `{data['audit_sources'][name]}`", ""]
    return lines
