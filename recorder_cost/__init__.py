"""The recorder's own cost, measured: benchmarks run by hand, quoted in docs/recorder-cost.md."""
