"""results.json → results.md: one Markdown table of every ratio next to its target, then the details."""


def _format(value, kind: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:.4g}"


def _target(row: dict) -> str:
    if row["target_kind"] == "within":
        return f"within ±{100 * row['target']:.0f} % of {row['reference']:.3g}"
    return f"{row['target_kind']} {row['target']:.4g}"


def render_markdown(report: dict) -> str:
    machine = report["machine"]
    lines = [
        f"# Benchmark results ({report['mode']} mode)",
        "",
        f"Machine: {machine['cpu']}, {machine['cpu_cores']} cores ({machine['torch_threads']} torch thread(s)), "
        f"load average at start {machine['load_average_at_start']}; torch {machine['torch']}, "
        f"transformers {machine['transformers']}, Python {machine['python']}; {machine['date']}.",
        "",
        "Ratios are medians of per-repetition ratios of variants timed side by side (interleaved); "
        "`noise` is the min–max of those per-repetition ratios. The CPU is shared with other jobs: CPU benchmarks "
        f"run {machine['torch_threads']} torch thread(s) and are timed in process CPU time (see "
        "`benchmarks/common.py`).",
        "",
        "| Benchmark | Measured | Target | Met | Noise (min–max) | Config | Note |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["summary"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[row["met"]]
        noise = "–" if row["noise"] is None else f"{row['noise'][0]:.4g}–{row['noise'][1]:.4g}"
        note = row["note"].replace("|", "\\|")
        cells = [row["name"], _format(row["measured"]), _target(row), met, noise, row["config"], note]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for name, outcome in report["benchmarks"].items():
        status = outcome.get("status")
        if status:
            lines.append(f"- **{name}**: {status}")
    gpu = report["benchmarks"].get("gpu", {})
    if gpu.get("training"):
        config = gpu.get("config", {})
        lines += [
            "",
            f"## GPU ({gpu.get('device')}): {config.get('batch_size')} clips × {config.get('clip_seconds')} s "
            "per step",
            "",
            f"Clips: {gpu.get('clips')}.",
            "",
            "| stage/precision | ms/step | samples/s | peak GiB | host syncs/step |",
            "|---|---|---|---|---|",
        ]
        for row, values in gpu["training"].items():
            peak = values["peak_gib"]
            lines.append(
                f"| {row} | {values['ms_per_step']} | {values['samples_per_second']} | "
                f"{'–' if peak is None else peak} | {values['host_syncs_per_step']} |"
            )
        evaluation, cache = gpu["evaluation"], gpu["prefix_cache"]
        lines += [
            "",
            f"Evaluation (fp32, forward only): {evaluation['ms_per_batch']} ms/batch, "
            f"{evaluation['samples_per_second']} samples/s. Frozen-prefix cache (fp16): "
            f"{cache['clips_per_second']} clips/s.",
        ]
    lines += ["", f"Total wall time: {report.get('total_wall_seconds')} s.", ""]
    return "\n".join(lines)
