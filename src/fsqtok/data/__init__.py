"""Datasets and built-in sample data (see :mod:`fsqtok.data.samples`)."""
