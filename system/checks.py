"""One finding of `iommu-trace doctor`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# ok: usable; warn: works with a caveat; fail: blocks recording;
# info: a fact, no judgement; unknown: could not be seen (usually: needs root).
STATUSES = ("ok", "warn", "fail", "info", "unknown")


@dataclass
class Check:
    area: str  # bpf | headers | probes | iommu | gpu | rdma | tools
    name: str
    status: str
    summary: str
    detail: list[str] = field(default_factory=list)
    fix: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"bad status {self.status!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
