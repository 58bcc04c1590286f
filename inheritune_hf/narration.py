"""What a long run tells its user: one line per stage, from the main process only.

The library says each stage (the reference's loss, each round with its depth, a resume point, the baseline) through
`narrate`, at INFO on the `inheritune_hf` loggers, so a notebook user opts in with plain `logging` and a library
caller stays quiet. The console script and the recipes call `print_narration()`, which prints those lines as
`inheritune: ...`. Under `accelerate launch` only the main process narrates; the others train the same rounds.
"""

from __future__ import annotations

import logging
import sys
from typing import Any


def narrate(logger: logging.Logger, message: str, *args: Any) -> None:
    """Log one line of the run's story at INFO, from the main process only."""
    from accelerate import PartialState

    if PartialState().is_main_process:
        logger.info(message, *args)


class _Stdout(logging.StreamHandler):
    """A handler on whatever `sys.stdout` is when a line is written (a test or a notebook may swap it)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ sets it; the property always answers sys.stdout
        pass


def print_narration() -> None:
    """Print the package's INFO lines on stdout as `inheritune: ...` (once, however often it is called)."""
    package = logging.getLogger("inheritune_hf")
    if not any(isinstance(handler, _Stdout) for handler in package.handlers):
        handler = _Stdout()
        handler.setFormatter(logging.Formatter("inheritune: %(message)s"))
        package.addHandler(handler)
    package.setLevel(logging.INFO)
