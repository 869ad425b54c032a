"""FlexGen (PyPI flexgen 0.1.8) on OPT with dummy weights: KV-cache offloading, no download at all.

    sudo iommu-trace record -o flexgen.iot --probe cudaMemcpyAsync -- \
        python examples/flexgen_run.py --model facebook/opt-1.3b --percent 100 0 0 100 100 0
    iommu-trace overhead --phases flexgen.iot      # setup / prefill / decode: DMA events per token

`--percent` is FlexGen's policy: weights on GPU/CPU, KV cache on GPU/CPU,
activations on GPU/CPU (the rest of each on disk); `100 0 0 100 100 0` keeps the
weights on the GPU and the whole KV cache in CPU memory, so every layer of every
decoded token copies its cache slice between host and GPU.

FlexGen asks the Hugging Face hub for OPT's tokenizer; with dummy weights the
tokens do not matter, so a local stand-in that yields token ids replaces it.
FlexGen times each generation step (step 0 is the prefill); the windows, in
CLOCK_MONOTONIC ns like the trace's ts_ns, go to RESULT (default: TRACE.workload.json
beside the trace when run under `iommu-trace record -o TRACE`), which
`iommu-trace overhead --phases` reads.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from types import SimpleNamespace


class StandInTokenizer:
    """Enough of AutoTokenizer for FlexGen's get_test_inputs: text -> OPT-range token ids."""

    pad_token_id = 1  # OPT's <pad>
    bos_token_id = 2  # OPT's </s>, which it puts first

    def __init__(self, padding_side: str = "left", **_) -> None:
        self.padding_side = padding_side

    @classmethod
    def from_pretrained(cls, _name: str, **kw) -> StandInTokenizer:
        return cls(**kw)

    def encode(self, text: str) -> list[int]:
        return [self.bos_token_id] + [4 + b for b in text.encode()]  # ids 4..259: all in vocab

    def __call__(self, texts, padding=None, max_length=None, **_):
        ids = [self.encode(t) for t in ([texts] if isinstance(texts, str) else texts)]
        if padding == "max_length" and max_length:
            pad = [self.pad_token_id]
            ids = [i[-max_length:] for i in ids]
            if self.padding_side == "left":
                ids = [pad * (max_length - len(i)) + i for i in ids]
            else:
                ids = [i + pad * (max_length - len(i)) for i in ids]
        return SimpleNamespace(input_ids=ids)

    def batch_decode(self, seqs, **_) -> list[str]:
        return [" ".join(map(str, s)) for s in seqs]


def flexgen_argv(a: argparse.Namespace) -> list[str]:
    return [
        "--model",
        a.model,
        "--path",
        "_DUMMY_",
        "--offload-dir",
        a.offload_dir,
        "--percent",
        *map(str, a.percent),
        "--prompt-len",
        str(a.prompt_len),
        "--gen-len",
        str(a.gen_len),
        "--gpu-batch-size",
        str(a.gpu_batch_size),
        "--num-gpu-batches",
        str(a.num_gpu_batches),
        "--log-file",
        os.devnull,
        "--verbose",
        "1",
    ]


def default_result() -> str | None:
    try:  # our package, when importable, knows the trace being recorded
        from iommu_trace.bench.sidecar import sidecar_path
        from iommu_trace.tracefile.sidecar import WORKLOAD_SUFFIX
    except ImportError:
        return None
    return sidecar_path(WORKLOAD_SUFFIX)


def write_result(path: str, result: dict) -> None:
    try:
        from iommu_trace.tracefile.sidecar import write_workload
    except ImportError:  # run without the package: the same schema, by hand
        with open(path, "w") as f:
            json.dump({"workload": result}, f, indent=1)
        return
    write_workload(path, result)


def mono_offset_ns() -> int:
    """CLOCK_MONOTONIC - perf_counter, to put FlexGen's timer stamps on the trace's clock."""
    a = time.monotonic_ns()
    p = time.perf_counter_ns()
    b = time.monotonic_ns()
    return (a + b) // 2 - p


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="facebook/opt-1.3b")
    p.add_argument(
        "--percent",
        nargs=6,
        type=int,
        default=[100, 0, 0, 100, 100, 0],
        metavar="P",
        help="weights GPU CPU, cache GPU CPU, activations GPU CPU",
    )
    p.add_argument("--prompt-len", type=int, default=512)
    p.add_argument("--gen-len", type=int, default=32)
    p.add_argument("--gpu-batch-size", type=int, default=8)
    p.add_argument("--num-gpu-batches", type=int, default=1)
    p.add_argument("--offload-dir", default=os.path.join(tempfile.gettempdir(), "flexgen_offload"))
    p.add_argument("--result", help="write the step windows and throughput here (JSON)")
    a = p.parse_args(argv)

    t_start = time.monotonic_ns()
    result_path = a.result or default_result()
    try:
        import flexgen
        import flexgen.flex_opt as fo
        import torch
    except ImportError as e:
        print(f"flexgen_run: {e} (pip install flexgen==0.1.8)", file=sys.stderr)
        return 2
    fo.AutoTokenizer = StandInTokenizer  # no hub: FlexGen only needs token ids
    fp = argparse.ArgumentParser()
    fo.add_parser_arguments(fp)
    fargs = fp.parse_args(flexgen_argv(a))
    print(f"phase setup t_mono_ns={t_start}", flush=True)
    fo.run_flexgen(fargs)
    t_end = time.monotonic_ns()

    off = mono_offset_ns()
    t = fo.timers("generate")
    steps = [
        {
            "step": i,
            "phase": "prefill" if i == 0 else "decode",
            "t_start_ns": round(s * 1e9) + off,
            "t_end_ns": round(e * 1e9) + off,
        }
        for i, (s, e) in enumerate(zip(t.start_times, t.stop_times, strict=True))
    ]
    batch = a.gpu_batch_size * a.num_gpu_batches
    costs = t.costs
    decode_s = sum(costs[1:])
    result = {
        "workload": "flexgen",
        "model": a.model,
        "percent": a.percent,
        "prompt_len": a.prompt_len,
        "gen_len": a.gen_len,
        "gpu_batch_size": a.gpu_batch_size,
        "num_gpu_batches": a.num_gpu_batches,
        "batch": batch,
        "t_start_ns": t_start,
        "t_end_ns": t_end,
        "prefill_s": costs[0],
        "decode_s": decode_s,
        "prefill_tok_s": batch * a.prompt_len / costs[0],
        "decode_tok_s": batch * (len(costs) - 1) / decode_s if decode_s > 0 else None,
        "steps": steps,
        "versions": {"flexgen": getattr(flexgen, "__version__", "?"), "torch": torch.__version__},
    }
    for s in steps:
        print(f"phase {s['phase']}-{s['step']} t_mono_ns={s['t_start_ns']}", flush=True)
    print(f"phase done t_mono_ns={t_end}", flush=True)
    print(
        f"flexgen_run: prefill {result['prefill_tok_s']:.1f} token/s "
        f"({batch} x {a.prompt_len} tokens in {costs[0]:.3f} s), "
        f"decode {result['decode_tok_s'] or 0:.1f} token/s "
        f"({batch} x {len(costs) - 1} tokens in {decode_s:.3f} s)",
        flush=True,
    )
    if result_path:
        write_result(result_path, result)
        print(f"flexgen_run: step windows in {result_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
