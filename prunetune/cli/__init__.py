"""The ``prunetune`` command line: the app and its entry point are in :mod:`.main`, one
module per group of commands beside it, shared options in :mod:`.options`, terminal
output in :mod:`.console`. Nothing outside this package imports it."""

from prunetune.cli.main import app, main

__all__ = ["app", "main"]
