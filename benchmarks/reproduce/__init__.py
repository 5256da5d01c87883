"""The paper's reproductions (MaskGIT, UViM, residual FSQ stages), run as ``python -m
benchmarks.reproduce.<name>`` from the repository root (``make reproduce-*``)."""
