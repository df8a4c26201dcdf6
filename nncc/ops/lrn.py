"""lrn operators."""
