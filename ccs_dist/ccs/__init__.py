"""Step 3's numbers: CCS per head, CCS@K, categories, and the head sets pruning compares."""
