"""Training input pipeline: DataLoader workers, pin_memory, non-blocking copies, a model step.

    python3 recorder_cost/workloads/input_pipeline.py --result r.json --seconds 4

Four worker processes (forked: the recorder follows them) make synthetic
3x64x64 uint8 images; the main process pins each batch (pin_memory's thread),
copies it with non_blocking=True and runs a small CNN's forward, backward and
SGD step. Throughput: samples per second.
"""

from __future__ import annotations

import timing  # first: the workload's first instruction

BATCH = 256


def main() -> None:
    p = timing.parser(__doc__)
    p.add_argument("--workers", type=int, default=4)
    a = p.parse_args()
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset

    class Synthetic(Dataset):
        def __len__(self) -> int:
            return 1 << 30

        def __getitem__(self, i: int):
            g = torch.Generator().manual_seed(i)
            return torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=g), i % 10

    dev = torch.device("cuda")
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    ).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    loader = DataLoader(
        Synthetic(),
        batch_size=BATCH,
        num_workers=a.workers,
        pin_memory=True,
        persistent_workers=True,
        prefetch_factor=4,
    )
    it = iter(loader)

    def step() -> int:
        x, y = next(it)
        x = x.to(dev, non_blocking=True).float().div_(255)
        y = y.to(dev, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        torch.cuda.synchronize()
        return BATCH

    timing.run(a, step, "input-pipeline", "samples", workers=a.workers)


if __name__ == "__main__":
    main()
