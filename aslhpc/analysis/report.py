"""report.md, rendered from an :class:`~aslhpc.analysis.analyze.CollectOutput`: the paper-shaped tables,
the verdicts with their evidence, the caveats that apply, the scaling model, the recommendation, what
each cell used. Plots are linked relatively, so the experiment directory can be copied or published as
it is. Nothing here reads or writes a file.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import pandas as pd

from aslhpc.analysis.analyze import Analysis, CollectOutput, cpu_fallback_note, recorded_settings
from aslhpc.analysis.compare import comparison_view, configurations
from aslhpc.analysis.console import STUDY_EPOCHS
from aslhpc.analysis.leakage import (
    LEAK_FREE_LABEL,
    gap_sentence,
    gap_view,
    split_label,
)
from aslhpc.analysis.reference import REFERENCE_LABEL, REFERENCE_TITLE
from aslhpc.analysis.stats import SINGLE_RUN_NOTE
from aslhpc.analysis.tables import (
    breakdown_view,
    comparison_tables,
    configs_line,
    details_view,
    has_breakdown,
    main_view,
    memory_column,
    reference_only,
    shared_settings,
    to_markdown,
)
from aslhpc.analysis.verdicts import (
    H4_READING,
    Verdict,
    capped,
    completed,
    paper_verdicts,
    shared_host,
)
from aslhpc.states import CellState

MEMORY_NOTE = (
    "`GPU n (GB, per-process)` is the peak memory of the cell's own process on that GPU (NVML's "
    "per-process figure, `proc_mem_peak_gb`, `gpu<i>_proc_gb` in `cells.csv`; sampled every few seconds, "
    "so a shorter spike can be missed): the figure the 2020 study read off nvidia-smi's process list, so "
    "for the paper pipeline (data in host memory, as 2020's loader kept it) these columns compare like "
    "with like. A fast-pipeline cell keeps its dataset on the GPU in its own process: its per-process "
    "figure includes `Data on GPU (GB)` (per rank), so subtract that for its training memory alone. "
    "`Device-wide total (GB)` sums the NVML device peaks (`mem_peak_gb`, `gpu<i>_device_gb` in "
    "`cells.csv`: everything on the device, other processes included); each is shown only when measured."
)

#: under the paper-shaped tables: which epoch the accuracies are from (status shows the last one)


ACCURACY_NOTE = (
    "Train/Valid/Test Acc are from the epoch with the lowest validation loss (`best_epoch` in `cells.csv`), "
    "not the last epoch that `status` shows."
)


def _leakage_md(a: Analysis, plot: Path | None, exp_dir: Path) -> list[str]:
    """The leakage section: the gap table (+ plot) and, per split, its paper tables and verdicts."""
    if not a.by_split or a.gap is None:
        return []
    lines = [
        "## Leakage: random vs blocked split",
        "",
        "The images are consecutive video frames: the random split leaves a near-identical neighbour of "
        "every test frame in training, the blocked split tests on contiguous frame blocks the model never "
        f"saw neighbours of, so its figures are the {LEAK_FREE_LABEL}. Both splits come from the same "
        "seed (`split_seed`, hashes in `cells.csv`); every other setting is shared. Gap = random − blocked "
        "test accuracy per configuration, in percentage points; its interval is the paired Student t over "
        "repeats (repeat r of each split share a seed), or with one run each the Newcombe interval built "
        "from the two Wilson intervals on the test images.",
        "",
        to_markdown(gap_view(a.gap), index=False),
        "",
    ]
    if sentence := gap_sentence(a.gap):
        lines += [sentence, ""]
    if plot is not None:
        rel = plot.relative_to(exp_dir) if plot.is_relative_to(exp_dir) else plot
        lines += [f"![leakage_gap]({rel.as_posix()})", ""]
    for kind, sub in a.by_split.items():
        lines += [f"### Split: {split_label(kind)}", ""]
        for bs, t in sub.tables.items():
            lines += [f"#### Batch size {bs} ({kind} split)", "", to_markdown(t), ""]
        lines += [f"Hypotheses judged on the {kind} split alone:", "", _verdicts_md(sub.verdicts), ""]
    return lines


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _verdicts_md(verdicts: list[Verdict], with_paper: bool = True) -> str:
    cols = (
        ["hypothesis", "statement", "verdict"]
        + (["2020 paper concluded"] if with_paper else [])
        + ["evidence"]
    )
    rows = []
    for v in verdicts:
        row = [v.hypothesis, v.statement, f"**{v.verdict}**"]
        if with_paper:
            row.append(paper_verdicts().get(v.hypothesis, ""))
        rows.append([*row, v.evidence + (f" (test: {v.test})" if v.test else "")])
    return to_markdown(pd.DataFrame(rows, columns=cols), index=False)


PROVENANCE_COLUMNS = [
    ("cell_id", "cell"),
    ("state", "state"),
    ("host", "host"),
    ("device_names", "devices"),
    ("gpus_used", "GPUs used"),
    ("driver", "driver"),
    ("cuda", "CUDA"),
    ("torch", "torch"),
    ("aslhpc_version", "aslhpc"),
    ("slurm_job_id", "SLURM job"),
    ("slurm_partition", "partition"),
    ("slurm_nodelist", "nodes"),
    ("split_hash", "split hash"),
    ("finished_at", "finished"),
]


def _provenance_md(cells: pd.DataFrame) -> str:
    view = cells[[c for c, _ in PROVENANCE_COLUMNS]].copy()
    view["split_hash"] = view["split_hash"].map(lambda h: str(h)[:12] if isinstance(h, str) else "")
    view["gpus_used"] = view["gpus_used"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    # identical values in a column are shown once, above the table, to keep it compact
    common = {}
    for col, label in PROVENANCE_COLUMNS[2:]:
        vals = view.loc[cells["state"] == CellState.COMPLETED, col].dropna().astype(str).unique()
        if len(vals) == 1 and col not in ("slurm_job_id", "finished_at", "gpus_used"):
            common[label] = vals[0]
            view = view.drop(columns=col)
    view = view.rename(columns=dict(PROVENANCE_COLUMNS))
    head = ""
    if common:
        head = (
            "Same for every completed cell: " + "; ".join(f"{k}: `{v}`" for k, v in common.items()) + ".\n\n"
        )
    return head + to_markdown(view, index=False)


BREAKDOWN_NOTE = (
    "Summed over the epochs (result.json `time_breakdown`): waiting for the next batch (the input "
    "pipeline), compute (forward, backward and optimiser step), validation, and the rest. \"data wait / "
    "training loop\" is waiting ÷ (waiting + compute); GPU util is NVML's mean utilisation over the GPUs "
    "the cell used. \"(contended)\": the configuration's cells ran on one host at the same time as others "
    "(Caveats names them), so they waited on each other and their parts are not comparable."
)


def _breakdown_md(a: Analysis) -> list[str]:
    """Where the time went, per configuration, or a note that the cells did not record it."""
    lines = ["## Where the time went", ""]
    if a.label == REFERENCE_LABEL:
        return []
    if not has_breakdown(a.summary):
        return lines + [
            "Time breakdown: not recorded (the cells' result.json has no `time_breakdown`: the trainer "
            "that ran them predates it), so H2's evidence cannot say what limited scaling.",
            "",
        ]
    return lines + [BREAKDOWN_NOTE, "", to_markdown(breakdown_view(a.summary), index=False), ""]


def _cpu_reference_md(out: CollectOutput) -> list[str]:
    """The study's CPU epoch beside its own 1-GPU epoch at the same batch size and any CPU cell of ours."""
    c = out.cpu_reference
    if c is None:
        return []
    lines = [
        f"## The 2020 CPU run — {REFERENCE_LABEL}",
        "",
        f"{c.source}: {c.epochs} epoch at batch size {c.batch_size} in {c.exec_time_s:.2f} s on {c.device} "
        f"(train accuracy {c.train_acc:.2f} %, validation {c.val_acc:.2f} %; the study ran no more epochs "
        "on the CPU).",
    ]
    ref = out.reference.summary if out.reference is not None else out.analysis.summary
    if out.analysis.label == REFERENCE_LABEL or out.reference is not None:
        one = ref[(ref["gpus"] == 1) & (ref["batch_size"] == c.batch_size) & (ref["n"] > 0)]
        if len(one):
            epoch_gpu = float(one["exec_time_s"].iloc[0]) / STUDY_EPOCHS
            lines[-1] += (
                f" Its 1-GPU run at the same batch size took {epoch_gpu:.2f} s per epoch (all {STUDY_EPOCHS} "
                f"epochs averaged): {c.epoch_s / epoch_gpu:.1f}× faster than the CPU epoch."
            )
    mine = out.analysis.summary
    cpu = mine[(mine["gpus"] == 0) & (mine["n"] > 0)] if out.analysis.label != REFERENCE_LABEL else mine[:0]
    for _, r in cpu.iterrows():
        epochs = _cells_epochs(out.analysis.cells, r)
        if epochs:
            lines[-1] += (
                f" This run's CPU cell at batch size {int(r['batch_size'])}: "
                f"{float(r['exec_time_s']) / epochs:.2f} s per epoch over {epochs} epochs."
            )
    return lines + [""]


def _cells_epochs(cells: pd.DataFrame, r: pd.Series) -> int:
    done = cells[(cells["gpus"] == r["gpus"]) & (cells["batch_size"] == r["batch_size"])]
    vals = pd.to_numeric(done["epochs"], errors="coerce").dropna()
    return int(vals.median()) if len(vals) else 0


def _literal_aside(a: Analysis) -> list[str]:
    """The literal reading of H4 as a labelled aside (not one of the four verdicts)."""
    v = a.h4_literal
    if v is None:
        return []
    return [
        f"*Aside, not the study's meaning:* {v.statement} On these numbers that reading is "
        f"**{v.verdict}** ({v.evidence}).",
        "",
    ]


def _header_md(out: CollectOutput) -> list[str]:
    a = out.analysis
    n_cells = len(a.cells)
    n_done = int((a.cells["state"] == CellState.COMPLETED).sum())
    lines = [f"# {a.name or out.exp_dir.name}: collected results", ""]
    if a.label == REFERENCE_LABEL:
        lines += [
            f"**These are {REFERENCE_LABEL}**: {REFERENCE_TITLE}, transcribed in "
            "`results/reference/lad2020.csv` (memory read off nvidia-smi by hand). aslhpc only recomputes "
            "the paper's derived figures and verdicts from them.",
            "",
        ]
    return lines + [
        f"Generated {_now()} by `python -m aslhpc.collect` from `{out.exp_dir}`: "
        f"{n_cells} cells, {n_done} completed, "
        f"{n_cells - n_done} hole{'' if n_cells - n_done == 1 else 's'}.",
        f"Where a configuration has repeats, figures are mean ± {a.ci * 100:g} % confidence-interval "
        "half-width (Student t) and `n` is completed/expected runs. `NA` = GPU not used (as in the paper); "
        "`n/m` = not measured (e.g. no NVML).",
        "",
    ] + _model_md(a.cells)


def _model_md(cells: pd.DataFrame) -> list[str]:
    """Which network the cells trained, with its size (parameters and FLOPs per image, from result.json)."""
    if "model" not in cells or "model_params" not in cells:
        return []
    lines = []
    for spec, group in cells[cells["model_params"].notna()].groupby("model"):
        params, gflops = group["model_params"].iloc[0], group["model_gflops"].iloc[0]
        flops = f", {gflops:.3g} GFLOPs per image (one forward pass)" if pd.notna(gflops) else ""
        lines.append(f"Model: `{spec}`, {int(params):,} parameters{flops}.")
    return lines + [""] if lines else []


def _tables_md(a: Analysis) -> list[str]:
    lines = ["## Tables (the paper's layout)", ""]
    for bs, t in a.tables.items():
        lines += [f"### Batch size {bs}", "", to_markdown(t), ""]
    if a.label != REFERENCE_LABEL and a.tables:
        lines += [ACCURACY_NOTE, "", MEMORY_NOTE, ""]
    return lines + _configurations_md(a)


def _configurations_md(a: Analysis) -> list[str]:
    """Every configuration in two tables a reader can take in: the figures that decide the study, then
    the detail (throughput, scaling, utilisation, memory per GPU); what all rows share is said once."""
    shared = shared_settings(a.summary, a.cells)
    _, mem_label = memory_column(a.summary)
    lines = [
        "## All configurations",
        "",
        *([f"All configurations: {', '.join(shared)}.", ""] if shared else []),
        "`runs` = completed/expected; exec time and test accuracy carry their interval (± over repeats; "
        "a single run's accuracy `[a, b]`, the interval on its test images); "
        f"`{mem_label}` sums the peaks over the GPUs used (`NA`: ran on no GPU); GPU-hours = exec time × "
        "GPUs used / 3600 (a CPU fallback: the GPUs requested, marked). Every number: `summary.csv` (per "
        "configuration) and `cells.csv` (per cell).",
        "",
        to_markdown(main_view(a.summary), index=False),
        "",
    ]
    if a.label == REFERENCE_LABEL:
        return lines
    details, unmeasured = details_view(a.summary)
    if len(details):
        lines += [
            "### Throughput, scaling and memory detail",
            "",
            "Speed-up is over the 1-GPU time at the same batch size; efficiency = T1 / (N · TN); GPU util = "
            "NVML's mean utilisation over the GPUs used; per-process per GPU = the cell's own process on "
            "each GPU; device-wide = every process on those GPUs. Where the time went is below."
            + (f" Not measured in any configuration: {', '.join(unmeasured)}." if unmeasured else ""),
            "",
            to_markdown(details, index=False),
            "",
        ]
    if note := cpu_fallback_note(a.summary):
        lines += [note, ""]
    return lines


#: how the verdicts weigh noise, under the Hypotheses heading


NOISE_NOTE = (
    "Decided from the numbers alone; a difference inside the intervals counts neither way (inconclusive). "
    "With repeats the intervals are Student-t over the runs. Without repeats an accuracy still has the "
    "binomial noise of the images it was measured on: it is shown as `value [a, b]`, the Wilson interval at "
    "the same confidence level; a time from a single run has no interval, so its comparisons say "
    "\"single runs\" and how large the deciding gap was. Two cells tested on the same images (both saved "
    "`test_predictions.csv`) are compared pairwise instead, by McNemar's exact test on the images only one "
    "of them got right (a difference where p < 1 − the confidence level). Each evidence ends with the test "
    "used; verdicts.json holds its figures."
)


def _verdicts_section(a: Analysis) -> list[str]:
    return [
        "## Hypotheses",
        "",
        NOISE_NOTE,
        "",
        _verdicts_md(a.verdicts),
        "",
        f"How H4 is read: {H4_READING}",
        "",
        *_literal_aside(a),
        "## Conclusions",
        "",
        a.conclusions.text,
        "",
    ]


def _ids(frame: pd.DataFrame, limit: int = 6) -> str:
    ids = [f"`{c}`" for c in frame["cell_id"].astype(str)]
    return ", ".join(ids[:limit]) + (f" and {len(ids) - limit} more" if len(ids) > limit else "")


def _repeats_caveat(summary: pd.DataFrame) -> str:
    """Configurations with one run: their times carry no noise estimate, their accuracies only the test
    images' binomial noise."""
    done = completed(summary, "exec_time_s")
    single = done[done["n"] == 1]
    if single.empty:
        return ""
    scope = ("Every configuration ran once (no repeats)" if len(single) == len(done)
             else f"{len(single)} of {len(done)} configurations ran once")
    return (f"{scope}: a single time has no run-to-run noise estimate, so timing comparisons are between "
            f"single runs. {SINGLE_RUN_NOTE}")


def _epochs_caveat(cells: pd.DataFrame) -> str:
    """Cells that trained fewer epochs than the study's 25: their accuracies (and the verdicts resting on
    them) are not the study's."""
    done = cells[cells["state"] == CellState.COMPLETED]
    epochs = pd.to_numeric(done["epochs"], errors="coerce")
    short = done[epochs < STUDY_EPOCHS]
    if short.empty:
        return ""
    counts = sorted({int(e) for e in pd.to_numeric(short["epochs"], errors="coerce").dropna()})
    what = "/".join(str(c) for c in counts)
    scope = "Every cell" if len(short) == len(done) else f"{len(short)} of {len(done)} cells ({_ids(short)})"
    return (f"{scope} trained {what} epoch{'s' if counts != [1] else ''}, not the study's {STUDY_EPOCHS}: "
            "accuracies, times and the verdicts resting on them are not comparable with the study's.")


def _pipeline_caveat(cells: pd.DataFrame) -> str:
    """Cells on the fast input pipeline: their times measure aslhpc's pipeline, not the 2020 one."""
    done = cells[cells["state"] == CellState.COMPLETED]
    fast = done[done["pipeline"].astype(str) != "paper"]
    if fast.empty:
        return ""
    scope = "Every cell" if len(fast) == len(done) else f"{len(fast)} of {len(done)} cells ({_ids(fast)})"
    return (f"{scope} ran the `{'/'.join(sorted(set(fast['pipeline'].astype(str))))}` input pipeline, not "
            "`paper` (our assumption of the 2020 setup, which the study does not describe): their times "
            "measure a different data path, so time comparisons with the study's are not like for like.")


def _cpu_caveat(cells: pd.DataFrame) -> str:
    """Cells that asked for GPUs but ran on the CPU."""
    done = cells[cells["state"] == CellState.COMPLETED]
    cpu = done[(done["gpus"] > 0) & (done["gpus_used"] == 0)]
    if cpu.empty:
        return ""
    return (f"{len(cpu)} cell(s) asked for GPUs but fell back to the CPU: {_ids(cpu)}; their "
            "times, speed-up and "
            "memory are CPU figures, and H2 does not compare GPU counts while they are in the matrix.")


def _tf32_caveat(cells: pd.DataFrame, recorded: pd.DataFrame) -> str:
    """TF32 as each GPU cell recorded it (the study ran full FP32)."""
    done = cells[(cells["state"] == CellState.COMPLETED) & (cells["gpus_used"] > 0)]
    rec = recorded[recorded["cell_id"].isin(done["cell_id"].astype(str))]
    if rec.empty:
        return ""
    on, off = rec[rec["tf32"].eq(True)], rec[rec["tf32"].eq(False)]
    unknown = rec[rec["tf32"].isna()]
    parts = []
    if len(on):
        parts.append(f"on in {len(on)} GPU cell(s) ({_ids(on)}): matmuls and convolutions ran in TF32, "
                     "not the study's full FP32")
    if len(off):
        parts.append(f"off (full FP32) in {len(off)} GPU cell(s)")
    if len(unknown):
        parts.append(f"not recorded in {len(unknown)} GPU cell(s) ({_ids(unknown)}: an older trainer)")
    return "TF32, as each cell's result.json recorded it (`tf32`): " + "; ".join(parts) + "."


def _clock_caveat(cells: pd.DataFrame, recorded: pd.DataFrame) -> str:
    """Which clock Exec. Time is, and what it leaves out."""
    done = cells[cells["state"] == CellState.COMPLETED]
    if done.empty:
        return ""
    clocks = sorted({c for c in recorded["clock"] if c})
    on = f"on {'; '.join(clocks)}" if clocks else "its clock not recorded (an older trainer)"
    prep = pd.to_numeric(done["data_prep_s"], errors="coerce").dropna()
    apart = (f"; data preparation (cache build/open, {prep.mean():.1f} s on average, `data_prep_s`) is apart"
             if len(prep) else "")
    return (f"`Exec. Time` is `exec_time_s`: the trainer's wall-clock time over all "
            "epochs, validation included "
            f"({on}){apart}; queueing and job start-up are not in it.")


def _memory_caveat(cells: pd.DataFrame) -> str:
    """Which memory figure the tables show: NVML per-process peaks vs device-wide totals, and where none."""
    done = cells[(cells["state"] == CellState.COMPLETED) & (cells["gpus_used"] > 0)]
    if done.empty:
        return ""
    proc = [c for c in done.columns if c.startswith("gpu") and c.endswith("_proc_gb") and c[3:-8].isdigit()]
    has_proc = done[proc].notna().any(axis=1) if proc else pd.Series(False, index=done.index)
    no_nvml = done[done["nvml"].eq(False)]
    parts = []
    if has_proc.any():
        parts.append(f"`GPU n (GB, per-process)` is NVML's per-process peak of the cell's own process "
                     f"({int(has_proc.sum())} of {len(done)} GPU cells), `Device-wide total (GB)` "
                     "the sum of the "
                     "device peaks, other processes included")
    elif no_nvml.empty:
        parts.append("no per-process memory was recorded: only the device-wide NVML peaks (everything on the "
                     "device) are shown, which are not the study's per-process figures")
    if len(no_nvml):
        why = next((str(r) for r in no_nvml["nvml_reason"] if isinstance(r, str) and r), "no reason recorded")
        parts.append(f"no NVML in {len(no_nvml)} GPU cell(s) ({_ids(no_nvml)}: {why}), "
                     "so their memory is n/m")
    return "Memory: " + "; ".join(parts) + "." if parts else ""


def caveats(out: CollectOutput) -> list[str]:
    """What limits this run's figures, computed from its data: only the caveats that apply."""
    a = out.analysis
    measured = a.label != REFERENCE_LABEL
    recorded = out.recorded if out.recorded is not None and measured else recorded_settings({}, a.cells[:0])
    done = completed(a.summary, "exec_time_s")
    items = [_repeats_caveat(a.summary)]
    if measured:
        items += [_epochs_caveat(a.cells), _pipeline_caveat(a.cells), _cpu_caveat(a.cells),
                  _tf32_caveat(a.cells, recorded), _clock_caveat(a.cells, recorded), _memory_caveat(a.cells)]
    if not measured or out.reference is not None or out.cpu_reference is not None:
        items.append(f"The {'rows' if not measured else '`2020 …` columns and the 2020 CPU run'} are the "
                     f"{REFERENCE_LABEL} ({REFERENCE_TITLE}), transcribed from the paper, not "
                     "measured by aslhpc; "
                     "its memory is nvidia-smi's per-process figure read off by hand.")
    for why in (capped(done), shared_host(done)):
        if why:
            items.append(f"{why[0].upper()}{why[1:]}.")
    return [i for i in items if i]


def _caveats_md(out: CollectOutput) -> list[str]:
    items = caveats(out)
    return ["## Caveats", "", *[f"- {i}" for i in items], ""] if items else []


def _reference_section(out: CollectOutput) -> list[str]:
    if out.reference is None:
        return []
    r = out.reference
    lines = [
        f"## Compared with the {REFERENCE_LABEL}",
        "",
        "`2020 …` columns are the published figures; `time / 2020` < 1 means this run was faster; memory "
        "compares per-process totals on both sides (the study's are nvidia-smi process readings).",
        "",
    ]
    for bs, t in comparison_tables(out.analysis.summary, r.summary, not_run=False).items():
        lines += [f"### Batch size {bs}", "", to_markdown(t), ""]
    if missing := reference_only(out.analysis.summary, r.summary):
        lines += [f"Not run here, so no rows above: {configs_line(missing)} ({len(missing)} of the "
                  f"reference's {len(r.summary)} configurations).", ""]
    lines += [f"Verdicts recomputed from the {REFERENCE_LABEL}:", ""]
    return lines + [_verdicts_md(r.verdicts), "", f"Reference conclusions: {r.conclusions.text}", ""]


def _named(label: str, name: str, lead: str = "") -> str:
    """What a column label stands for, before its path: "lead `name`, " where the label is not the
    experiment's name, else "lead, " (or nothing)."""
    named = " ".join(p for p in (lead, "" if label == name else f"`{name}`") if p)
    return f"{named}, " if named else ""


def _compare_md(out: CollectOutput) -> list[str]:
    """This experiment beside another (``collect --compare``): the configurations both completed, then
    those only one side has, in one line each."""
    c = out.compared
    if c is None:
        return []
    this, other = c.labels()
    mem = "per-process" if c.memory == "total_proc_gb" else "device-wide"
    lines = [
        f"## Compared with the experiment `{c.other_name}`",
        "",
        f"`{this}`: {_named(this, c.this_name, 'this experiment')}`{c.this_dir}`; "
        f"`{other}`: {_named(other, c.other_name)}`{c.other_dir}`; both measured by aslhpc and analysed "
        f"alike (the peak memory is the {mem} total over the GPUs used). Per configuration both completed: "
        f"each side's figure (mean ± interval over repeats) and Δ = `{other}` − `{this}`, "
        f"relative to `{this}` for time and memory (< 0: `{other}` was faster / used less), in percentage "
        "points for test accuracy; `(CPU)` = that side ran on the CPU.",
        "",
    ]
    if len(c.both):
        lines += [to_markdown(comparison_view(c), index=False), ""]
    else:
        lines += ["No configuration completed on both sides.", ""]
    for side, frame in ((this, c.only_this), (other, c.only_other)):
        if len(frame):
            lines += [f"Only in `{side}`: {configurations(frame)}.", ""]
    return lines


def _holes_md(a: Analysis) -> list[str]:
    lines = ["## Holes", ""]
    if a.holes.empty:
        lines += ["None: every expected cell has a result.", ""]
    else:
        n = len(a.holes)
        lines += [
            f"{n} cell{' has' if n == 1 else 's have'} no usable result:",
            "",
            to_markdown(a.holes, index=False),
            "",
        ]
    ignored = a.cells.attrs.get("ignored") or []
    if ignored:
        lines += [
            f"Ignored {len(ignored)} director{'y' if len(ignored) == 1 else 'ies'} under `cells/` that "
            f"name{'s' if len(ignored) == 1 else ''} no cell (not in the manifest, no readable result, "
            "not named g<gpus>-b<batch>-r<repeat>): "
            + "; ".join(f"`{i}`" for i in ignored),
            "",
        ]
    lines += ["## Provenance", ""]
    if a.label == REFERENCE_LABEL:
        return lines + [to_markdown(a.cells[["cell_id", "source"]], index=False), ""]
    return lines + [_provenance_md(a.cells), ""]


def render_report(out: CollectOutput, plot_paths: dict[str, Path] | None = None) -> str:
    """report.md as text: tables, time breakdown, plots, verdicts, conclusions, reference, holes,
    provenance."""
    a = out.analysis
    plot_paths = dict(plot_paths or {})
    gap_plot = plot_paths.pop("leakage_gap", None)
    usage_plot = plot_paths.pop("usage", None)
    lines = _header_md(out) + _tables_md(a) + _leakage_md(a, gap_plot, out.exp_dir)
    lines += _breakdown_md(a) + _cpu_reference_md(out)
    if plot_paths:
        lines += ["## Plots", ""]
        for key, p in plot_paths.items():
            rel = p.relative_to(out.exp_dir) if p.is_relative_to(out.exp_dir) else p
            lines += [f"![{key}]({rel.as_posix()})", ""]
    lines += _scaling_md(out, plot_paths.get("scaling")) + _recommendation_md(out)
    lines += _verdicts_section(a) + _rounds_md(out) + _caveats_md(out) + _reference_section(out)
    lines += _compare_md(out)
    lines += _holes_md(a) + _usage_md(out, usage_plot)
    return "\n".join(lines)


def _scaling_md(out: CollectOutput, plot: Path | None = None) -> list[str]:
    """The scaling model's sentences (T(N) = serial + parallel / N, fitted per series)."""
    if not out.scaling:
        return []
    lines = ["## Scaling model", "",
             "T(N) = serial + parallel / N fitted by non-negative least squares over every measured GPU "
             "count (scaling.csv; predictions.csv extends it to GPU counts not run, with intervals).", ""]
    lines += [f"- {s}" for s in out.scaling] + [""]
    return lines


def _recommendation_md(out: CollectOutput) -> list[str]:
    """The cheapest configuration within X % of the fastest, and the fastest within a budget."""
    rec = out.recommendation
    if rec is None or not rec.lines():
        return []
    return ["## Recommendation", "",
            "Over the configurations measured on GPUs (a CPU fallback is no GPU figure) and the GPU counts "
            "the scaling model predicts (predictions.csv, labelled predicted); time is a cell's wall clock "
            "(Exec. Time), GPU-hours = GPUs × time / 3600.", "",
            *[f"- {line}" for line in rec.lines()], ""]


def _rounds_md(out: CollectOutput) -> list[str]:
    """submit --until-conclusive: each round's cells, what stayed open, its GPU-hours, why it stopped."""
    if not out.rounds:
        return []
    lines = ["## Rounds (--until-conclusive)", "",
             "Each round after the first ran one more repeat of just the configurations whose overlapping "
             "intervals kept a verdict open. GPU-hours: exec time × GPUs of the round's completed cells.", "",
             "| round | cells added | still open after it | GPU-hours |", "|---:|---|---|---:|"]
    for r in out.rounds:
        cells = ", ".join(r["cells_added"]) if r["round"] > 1 else f"{len(r['cells_added'])} (the matrix)"
        still = ", ".join(r["open"]) or "none" if r["decided"] else "(not decided yet)"
        hours = f"{r['gpu_hours']:.3g}" if r.get("gpu_hours") is not None else ""
        lines.append(f"| {r['round']} | {cells} | {still} | {hours} |")
    last = out.rounds[-1]
    state = "decided" if last["decided"] else "running"
    lines += ["", f"Stopped after round {last['round']}: {last['outcome']}" if last["outcome"] else
              f"Round {last['round']} is {state}; the rounds go on.", ""]
    return lines


def _usage_md(out: CollectOutput, plot: Path | None = None) -> list[str]:
    """What each cell asked for vs used (aslhpc.analysis.efficiency), with its plot when drawn."""
    from aslhpc.analysis.efficiency import markdown

    lines = markdown(_usage(out))
    if lines and plot is not None:
        rel = plot.relative_to(out.exp_dir) if plot.is_relative_to(out.exp_dir) else plot
        lines += [f"![what each cell used]({rel.as_posix()})", ""]
    return lines


def _usage(out: CollectOutput) -> pd.DataFrame:
    """The usage frame the snapshot read (empty when none was)."""
    return out.usage if out.usage is not None else pd.DataFrame()
