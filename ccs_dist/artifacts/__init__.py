"""Artifacts: the content-addressed store, storage roots (local or object store), table schemas, the run layout."""
