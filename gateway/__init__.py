"""linegw gateway: one common, typed view of a heterogeneous battery cell line."""

__version__ = "0.1.0"
