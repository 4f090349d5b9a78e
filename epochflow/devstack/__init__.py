"""The embedded runtime of `epochflow up`, the tests, the demo and the benchmarks: the
Kafka-compatible broker process, PostgreSQL, the worker supervisor, and the stack that
starts them in order."""
