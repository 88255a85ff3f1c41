"""Benchmarks for mediaprep (see `make bench`)."""
