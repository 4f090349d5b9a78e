"""epochflow: portfolio positions and valuations kept correct under late, out-of-order,
duplicated and missing data."""

__version__ = "0.1.0"
