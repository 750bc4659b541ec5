"""The only package that imports ray: actors, placement and the Ray executor of the full grid."""
