"""Engine benchmark: every backend x variant x batching attempt against CrossEncoder.predict."""
