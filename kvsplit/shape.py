"""Model shapes (OPT configs, no weights) and the bytes one decode step moves."""

from __future__ import annotations

from dataclasses import asdict, dataclass

DTYPE_BYTES = {"fp16": 2, "bf16": 2, "fp32": 4}


@dataclass(frozen=True)
class ModelShape:
    name: str
    hidden: int
    heads: int
    layers: int
    ffn: int
    dtype: str = "fp16"

    @property
    def elem(self) -> int:
        return DTYPE_BYTES[self.dtype]

    def act_bytes(self, batch: int) -> int:
        """Bytes of one token's layer input X (all sequences of the batch)."""
        return batch * self.hidden * self.elem

    def kv_bytes(self, batch: int) -> int:
        """Bytes of one token's K and V: twice its activation."""
        return 2 * self.act_bytes(batch)

    def weight_bytes(self) -> int:
        """One layer's weights: Q, K, V, O projections and the two FFN matrices."""
        h = self.hidden
        return (4 * h * h + 2 * h * self.ffn) * self.elem

    def to_dict(self) -> dict:
        return asdict(self)


# The shapes of facebook's OPT configs (hidden, heads, layers, ffn); weights are random.
OPT = {
    "opt-125m": ModelShape("opt-125m", 768, 12, 12, 3072),
    "opt-1.3b": ModelShape("opt-1.3b", 2048, 32, 24, 8192),
    "opt-6.7b": ModelShape("opt-6.7b", 4096, 32, 32, 16384),
    "opt-13b": ModelShape("opt-13b", 5120, 40, 40, 20480),
    "opt-30b": ModelShape("opt-30b", 7168, 56, 48, 28672),
}


def shape_from_dict(d: dict) -> ModelShape:
    return ModelShape(**d)
