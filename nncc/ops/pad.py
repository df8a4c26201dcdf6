"""pad operators."""
