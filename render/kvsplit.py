"""Text and plots of plans and sweep results (the computations live in schedule/sweep)."""

from __future__ import annotations

from ..kvsplit.schedule import Plan


def _ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e3:.3f}"


def _mode(graphs: bool) -> str:
    return "CUDA graphs" if graphs else "eager"


def plan_text(p: Plan, layers: int) -> str:
    c = p.costs
    what = "per layer" if p.schedule == "row" else f"per layer, {p.batches} batches"
    return "\n".join(
        [
            f"schedule {p.schedule}, batch {p.batch}, context {p.context}"
            + (f", {p.batches} batches per column" if p.schedule == "column" else ""),
            f"  link: {c['t0'] * 1e6:.1f} us + {1e-9 / c['per_byte']:.2f} GB/s;"
            f"  recompute: {c['c0'] * 1e6:.1f} us + {c['c1'] * 1e9:.2f} ns/row;"
            f"  rest of layer {c['rest'] * 1e3:.3f} ms",
            f"  CPU issue floor ({_mode(c.get('graphs', False))}): "
            f"{c['issue0'] * 1e6:.1f} us per layer, {c['issue1'] * 1e6:.1f} with recompute",
            f"  split: recompute {p.split} of {p.context} tokens ({p.fraction:.0%})",
            f"  predicted {what}: {p.layer_s * 1e3:.3f} ms (full transfer"
            f" {p.baseline_layer_s * 1e3:.3f} ms), gain {p.gain:+.1%}",
            f"  predicted per token ({layers} layers): {p.token_s * 1e3:.3f} ms;"
            f" {p.tokens_per_s:.1f} tokens/s (full transfer {p.baseline_tokens_per_s:.1f})",
        ]
    )


def results_markdown(res: dict) -> str:
    """One table per sweep: each split's predicted and measured ms per layer."""
    lines = []
    for cfg in res["configs"]:
        base = next(r for r in cfg["splits"] if r["split"] == 0)
        ch = cfg.get("chosen", {})
        lines += [
            f"**batch {cfg['batch']}, context {cfg['context']}, "
            f"{_mode(cfg.get('graphs', False))}** — LP's split "
            f"{cfg['plan']['split']} ({cfg['plan']['fraction']:.0%})"
            + (
                f": predicted {_ms(ch['predicted_layer_s'])} ms, measured "
                f"{_ms(ch['measured_layer_s'])} ms ({ch['error']:+.1%}); measured gain over "
                f"full transfer {ch['measured_gain']:+.1%} (predicted {ch['predicted_gain']:+.1%})"
                if ch
                else ""
            ),
            "",
            "| split | recomputed | predicted ms/layer | measured ms/layer | vs full transfer "
            "(measured) | max abs diff |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for r in cfg["splits"]:
            m, b = r["measured_layer_s"], base["measured_layer_s"]
            vs = "-" if m is None or b is None else f"{m / b - 1:+.1%}"
            mark = " (LP)" if r["split"] == cfg["plan"]["split"] else ""
            lines.append(
                f"| {r['split']}{mark} | {r['fraction']:.0%} | {_ms(r['predicted_layer_s'])} |"
                f" {_ms(m)} | {vs} | {r['max_abs_diff']:.2g} |"
            )
        lines.append("")
    return "\n".join(lines)


def results_plot(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfgs = res["configs"]
    fig, axes = plt.subplots(1, len(cfgs), figsize=(3.6 * len(cfgs), 3.2), squeeze=False)
    for ax, cfg in zip(axes[0], cfgs, strict=True):
        xs = [100 * r["fraction"] for r in cfg["splits"]]
        ax.plot(xs, [1e3 * r["predicted_layer_s"] for r in cfg["splits"]], "-", label="predicted")
        meas = [r["measured_layer_s"] for r in cfg["splits"]]
        if all(m is not None for m in meas):
            ax.plot(xs, [1e3 * m for m in meas], "o", ms=4, label="measured")
        ax.axvline(100 * cfg["plan"]["fraction"], color="grey", ls=":", label="LP split")
        ax.set_title(
            f"batch {cfg['batch']}, context {cfg['context']}, {_mode(cfg.get('graphs', False))}",
            fontsize=9,
        )
        ax.set_xlabel("tokens recomputed (%)")
        ax.set_ylim(bottom=0)
    axes[0][0].set_ylabel("ms per layer")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{res['shape']['name']} decode step on {res['device']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
