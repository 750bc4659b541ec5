"""Step 2: TextSpan's five descriptions per head, the spans table, their stability, each head's top images."""
