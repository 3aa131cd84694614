"""``python -m prunetune.cli``: the ``prunetune`` command."""

from prunetune.cli.main import main

main()
