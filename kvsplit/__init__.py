"""I/O-aware KV-cache split: send activations for the first l tokens and recompute
their K and V on the GPU while the rest of the cache streams in over PCIe.

profile.py measures the link and the GPU, schedule.py picks l with an LP,
runtime.py runs a real decode step with the plan, sweep.py compares the two.
"""
