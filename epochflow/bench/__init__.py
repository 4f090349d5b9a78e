"""Benchmarks (`epochflow bench ...`): workloads, the runs that time them on the embedded
stack, and the naive baseline that `bench ingest` measures the batched agents against."""
