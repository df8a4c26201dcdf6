"""gemm operators."""
