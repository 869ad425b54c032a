"""FlexGen's setup/prefill/decode split (analysis.phases.split's table) as text, CSV and JSON."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ..analysis.taxonomy import COST_CATEGORIES, LABEL, SHORT
from .table import grid


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return "0" if x == 0 else f"{x:.3g}"


def text(name: str, table: pd.DataFrame, wl: dict, steps_with_maps: list[int]) -> str:
    cats = [c for c in COST_CATEGORIES if table[c].notna().all()]
    has_copies = "copies" in table
    head = ["PHASE", "SECONDS", "STEPS", "TOKENS", *(SHORT[c] for c in cats), "PINNED ALLOCS"]
    if has_copies:
        head += ["COPIES", "COPY MiB", "CALL ms"]
    rows = [tuple(head)]
    per = [("PER TOKEN", "", "", "", *([""] * len(cats)), "")]
    for r in table.to_dict("records"):
        tok = f"{r['tokens']} {r['token_kind']}".strip() if r["tokens"] else "-"
        cells = [
            r["phase"],
            f"{r['seconds']:.3f}",
            str(r["steps"] or "-"),
            tok,
            *(_fmt(r[c]) for c in cats),
            str(r["pinned_allocs"]),
        ]
        if has_copies:
            cells += [
                str(r["copies"]),
                f"{r['copy_bytes'] / 2**20:.1f}",
                f"{r['copy_call_ms']:.2f}",
            ]
        rows.append(tuple(cells))
        if r["tokens"]:
            n = r["tokens"]
            pc = [
                f"{r['phase']}/token",
                "",
                "",
                "",
                *(_fmt(r[c] / n) for c in cats),
                _fmt(r["pinned_allocs"] / n),
            ]
            if has_copies:
                pc += [
                    _fmt(r["copies"] / n),
                    _fmt(r["copy_bytes"] / 2**20 / n),
                    _fmt(r["copy_call_ms"] / n),
                ]
            per.append(tuple(pc))
    rows += [tuple(p + ("",) * (len(head) - len(p))) for p in per]
    aligned = grid(rows[0], rows[1:], right=range(1, len(head)))
    pct = " ".join(map(str, wl.get("percent", [])))
    lines = [
        f"{name}: FlexGen {wl.get('model', '?')}, batch {wl.get('batch')}, prompt "
        f"{wl.get('prompt_len')}, {len(wl['steps'])} steps, --percent {pct}",
        f"its own timing: prefill {wl.get('prefill_tok_s', 0):.1f} token/s, decode "
        f"{wl.get('decode_tok_s') or 0:.1f} token/s",
        "",
        aligned,
        "",
        f"{', '.join(f'{SHORT[c]} = {LABEL[c]}' for c in cats)}; PINNED ALLOCS = host "
        "allocations/registrations (each DMA-maps its pages once)"
        + (
            "; COPIES = per-copy probe calls, CALL ms = host time inside them"
            if has_copies
            else "; copies not recorded (enable --probe cudaMemcpyAsync,cudaMemcpy)"
        )
        + ".",
    ]
    unrec = [LABEL[c] for c in COST_CATEGORIES if c not in cats]
    if unrec:
        lines.append(f"Not recordable in this trace (probe absent): {', '.join(unrec)}.")
    dec = table[table["phase"] == "decode"]
    if len(dec) and "dma_map" in cats:
        d = dec.iloc[0]
        n = int(d["tokens"])
        where = ""
        if steps_with_maps:
            plural = "s" if len(steps_with_maps) > 1 else ""
            where = f", in step{plural} {', '.join(map(str, steps_with_maps))}"
        lines.append(
            f"Decode: {int(d['dma_map'])} DMA maps and {int(d['pinned_allocs'])} pinned host "
            f"allocations for {n} generated tokens ({d['dma_map'] / n:.3g} maps per token{where})."
        )
    return "\n".join(lines)


def to_json(path: str, table: pd.DataFrame, wl: dict, steps_with_maps: list[int]) -> str:
    doc = {
        "trace": path,
        "workload": {k: v for k, v in wl.items() if k != "steps"},
        "phases": json.loads(table.to_json(orient="records")),
        "decode_steps_with_maps": steps_with_maps,
    }
    return json.dumps(doc, indent=1)


def to_csv(table: pd.DataFrame) -> str:
    return table.to_csv(index=False)
