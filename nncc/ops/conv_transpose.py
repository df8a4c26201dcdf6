"""conv_transpose operators."""
