"""Serving: the Scorer façade, the micro-batcher, the gRPC transport, the process runtime, metrics."""
