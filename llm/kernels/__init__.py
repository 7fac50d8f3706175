"""rdro.llm.kernels — fused per-sequence log-prob kernels (Triton) and their pure-torch reference."""
