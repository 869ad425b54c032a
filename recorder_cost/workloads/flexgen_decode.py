"""FlexGen generating again and again: OPT dummy weights, KV cache in CPU memory.

    python3 recorder_cost/workloads/flexgen_decode.py --result r.json --seconds 4

examples/flexgen_run.py runs FlexGen's own benchmark once (a warm-up generation,
one timed generation, exit), too short and too fixed for the harness's windows;
this builds the same model, policy and inputs once and calls FlexGen's generate
in a loop, each step one prompt of --prompt-len and --gen-len new tokens for a
batch of --gpu-batch-size. With `--percent 100 0 0 100 100 0` every layer of
every decoded token copies its KV-cache slice between host and GPU. Throughput:
generated tokens per second (prefill included, as a user's request sees it).
"""

from __future__ import annotations

import timing  # first: the workload's first instruction


def main() -> None:
    import argparse
    import os
    import sys
    import tempfile
    from types import SimpleNamespace

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../examples"))
    p = timing.parser(__doc__)
    p.add_argument("--model", default="facebook/opt-1.3b")
    p.add_argument("--percent", nargs=6, type=int, default=[100, 0, 0, 100, 100, 0])
    p.add_argument("--prompt-len", type=int, default=256)
    p.add_argument("--gen-len", type=int, default=8)
    p.add_argument("--gpu-batch-size", type=int, default=8)
    a = p.parse_args()
    import flexgen.flex_opt as fo
    import flexgen_run  # examples/: the stand-in tokenizer and FlexGen's argv

    fo.AutoTokenizer = flexgen_run.StandInTokenizer  # no hub: only token ids matter
    fp = argparse.ArgumentParser()
    fo.add_parser_arguments(fp)
    mine = SimpleNamespace(
        model=a.model,
        offload_dir=os.path.join(tempfile.gettempdir(), "flexgen_offload"),
        percent=a.percent,
        prompt_len=a.prompt_len,
        gen_len=a.gen_len,
        gpu_batch_size=a.gpu_batch_size,
        num_gpu_batches=1,
    )
    f = fp.parse_args(flexgen_run.flexgen_argv(mine))
    # as FlexGen's run_flexgen builds them (flexgen 0.1.8, flex_opt.py)
    tokenizer = fo.AutoTokenizer.from_pretrained("facebook/opt-30b", padding_side="left")
    n = f.num_gpu_batches * f.gpu_batch_size
    inputs = fo.get_test_inputs(f.prompt_len, n, tokenizer)
    gpu, cpu, disk = fo.TorchDevice("cuda:0"), fo.TorchDevice("cpu"), fo.TorchDisk(f.offload_dir)
    env = fo.ExecutionEnv(gpu=gpu, cpu=cpu, disk=disk, mixed=fo.TorchMixedDevice([gpu, cpu, disk]))
    cc = fo.CompressionConfig
    policy = fo.Policy(
        f.gpu_batch_size, f.num_gpu_batches, *f.percent,
        f.overlap, f.sep_layer, f.pin_weight, f.cpu_cache_compute, f.attn_sparsity,
        f.compress_weight, cc(num_bits=4, group_size=64, group_dim=0, symmetric=False),
        f.compress_cache, cc(num_bits=4, group_size=64, group_dim=2, symmetric=False),
    )  # fmt: skip
    model = fo.OptLM(fo.get_opt_config(f.model), env, f.path, policy)

    def step() -> int:
        model.generate(inputs, max_new_tokens=f.gen_len, verbose=0)
        return n * f.gen_len

    try:
        timing.run(
            a, step, "flexgen", "tokens", model=f.model, prompt_len=f.prompt_len, batch=n,
            gen_len=f.gen_len, percent=f.percent,
        )  # fmt: skip
    finally:
        env.close_copy_threads()


if __name__ == "__main__":
    main()
