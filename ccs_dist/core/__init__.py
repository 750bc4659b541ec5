"""Foundations with no science: errors, logging, the axis legend, head names, weight spellings, the protocols."""
