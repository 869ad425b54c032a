"""Offloaded-weights decode: a random-init OPT-style model, accelerate's cpu_offload, greedy decode.

    python3 recorder_cost/workloads/offload_decode.py --result r.json --seconds 4

The weights stay in host memory; accelerate's hooks copy each layer's weights
to the GPU for every forward pass, so each decoded token moves the whole model
host -> device. The model is built from a config (no download). Throughput:
generated tokens per second (batch x new tokens).
"""

from __future__ import annotations

import timing  # first: the workload's first instruction


def main() -> None:
    p = timing.parser(__doc__)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--new-tokens", type=int, default=8)
    a = p.parse_args()
    import torch
    from accelerate import cpu_offload
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(0)
    cfg = OPTConfig(
        hidden_size=a.hidden,
        num_hidden_layers=a.layers,
        ffn_dim=4 * a.hidden,
        num_attention_heads=a.hidden // 64,
        word_embed_proj_dim=a.hidden,
        max_position_embeddings=2048,
    )
    model = OPTForCausalLM(cfg).to(torch.float16).eval()
    cpu_offload(model, execution_device=torch.device("cuda"))
    ids = torch.randint(4, cfg.vocab_size, (a.batch, 32), device="cuda")
    attn = torch.ones_like(ids)

    def step() -> int:
        with torch.no_grad():
            model.generate(
                input_ids=ids,
                attention_mask=attn,
                max_new_tokens=a.new_tokens,
                min_new_tokens=a.new_tokens,
                do_sample=False,
                pad_token_id=1,
            )
        torch.cuda.synchronize()
        return a.batch * a.new_tokens

    params = sum(p.numel() for p in model.parameters())
    timing.run(a, step, "offload-decode", "tokens", params=params)


if __name__ == "__main__":
    main()
