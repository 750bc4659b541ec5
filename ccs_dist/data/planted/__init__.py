"""World v3 of the planted-concept benchmark: equal-cardinality factors, two hidden ones, a frozen text side."""
