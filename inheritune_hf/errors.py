"""Errors a user can catch.

Every check that rejects input raises one of these *before* any work or write starts, with a message
that says what was wrong and what to do about it. They all derive from `InherituneError` (itself a
`ValueError`, so code that already catches bad-argument errors keeps working).
"""


class InherituneError(ValueError):
    """Base class of every error this package raises on purpose."""


class UnsupportedModelError(InherituneError):
    """The model is not a decoder-only causal LM (encoder-decoder, encoder-only, or no attention)."""


class LayerStackNotFoundError(InherituneError):
    """The stack of transformer blocks could not be located in the model."""


class InvalidLayersError(InherituneError):
    """A layer count or a layer index is out of range, or the list of layers is malformed."""


class ConfigSliceError(InherituneError):
    """A config field depends on the layer count in a way that cannot be sliced to the chosen layers."""


class OutputExistsError(InherituneError):
    """The output directory exists and is not empty, and overwriting was not asked for."""


class DataError(InherituneError):
    """A corpus, dataset or tokenizer cannot serve the requested samples or blocks."""


class TrainingError(InherituneError):
    """Training or growth settings are inconsistent (bad target, growth past the reference, resume mismatch)."""


class EvaluationError(InherituneError):
    """Downstream evaluation cannot run (missing extra, unknown task)."""


class HubError(InherituneError):
    """Publishing to the Hub failed or was refused (bad repo id, no token, unreachable endpoint)."""


class CheckpointError(InherituneError):
    """A checkpoint on disk is missing, corrupt, pickle-only, or cannot be mapped."""


class UnknownArgumentError(InherituneError):
    """A flag or a settings key is not one the command knows (usually a typo); the message names the closest."""


class InvalidArgumentError(InherituneError):
    """A flag's or a setting's value cannot be parsed (not a number, not one of the choices, missing, twice)."""


def for_the_command_line(message: str) -> str:
    """`message` as the CLI prints it: the library's spelling of a remedy, written "--overwrite (library:
    overwrite=True)" so that one message serves both, is dropped, since a command-line user has only the flag."""
    import re

    return re.sub(r" \(library: [^()]*(?:\([^()]*\)[^()]*)*\)", "", message)


def unknown_arguments(
    unknown: list[str], valid: list[str], what: str = "flag", where: str = ""
) -> UnknownArgumentError:
    """The error for `unknown` flags or keys, each with the closest of `valid` (difflib), on one line.

    A mistyped setting must stop a run before it starts: a typo in `--lerning_rate` would otherwise either end in
    a traceback or, worse, leave the default in place. `what` names the kind ("flag", "setting"), `where` the file
    it came from.
    """
    import difflib

    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
        located = f"unknown {what} {name}" + (f" in {where}" if where else "")
        parts.append(located + (f"; did you mean {close[0]}?" if close else ""))
    return UnknownArgumentError("; ".join(parts) if parts else f"unknown {what}")


def unknown_flags(rest: list[str], *parsers) -> UnknownArgumentError:
    """The error for the strings `argparse` (or `HfArgumentParser`) `parsers` left unparsed in `rest`.

    Flags are matched against every option string the parsers define (a script may parse in two passes); a value
    after an unknown flag is not named.
    """
    valid = sorted({option for parser in parsers for option in parser._option_string_actions})
    flags = [arg.split("=", 1)[0] for arg in rest if arg.startswith("-") and not _is_number(arg)]
    if not flags:
        return UnknownArgumentError(f"unexpected argument(s) {' '.join(rest)}; see --help")
    return unknown_arguments(flags, valid)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
