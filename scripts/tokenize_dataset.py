"""Tokenize a dataset into index shards; the same code and flags as ``fsqtok tokenize``.

    python scripts/tokenize_dataset.py --tokenizer T --data SOURCE --output OUT [...]
    accelerate launch --num_processes N scripts/tokenize_dataset.py --tokenizer T --data SOURCE --output OUT [...]
"""

from fsqtok.cli_support import exit_process
from fsqtok.shards.cli import main

if __name__ == "__main__":
    exit_process(main())
