// Replaced by the CUDA backend.
