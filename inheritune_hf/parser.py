"""One parser for every entry point: settings dataclasses from a YAML file, then flags (the way of TRL's TrlParser).

`InherituneParser` is an `HfArgumentParser` over the dataclasses of `inheritune_hf.settings` (and, for `run` and the
recipes, `transformers.TrainingArguments`). Every `inheritune` subcommand and every recipe script parses with it,
so they all behave alike:

- `--config FILE` reads a YAML mapping whose keys are the field names; flags given as well override it. `run` also
  takes the YAML file as its first argument (`inheritune run recipe.yaml --resume`), as it always did.
- Every flag has both spellings, `--num_samples` and `--num-samples` (HfArgumentParser adds the dashed one).
- A list flag takes its values space-separated (`--reinit position_embeddings final_norm`), the HfArgumentParser
  way; the flags that were comma-separated before (`COMMA_SEPARATED`) still accept commas, and a repeated list flag
  (`--include_path A --include_path B`) adds to the first.
- An unknown flag or YAML key stops the command with one line naming the closest valid one; a value that does not
  parse is one line too (`InvalidArgumentError`), not argparse's usage dump.
- `--help` shows the method's own settings; the Trainer's hundred-odd flags are summarized and listed by
  `--help-all`.
- Positional arguments users rely on (`inheritune inherit SRC OUT`) are fields too, so a YAML file can give them.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from transformers import HfArgumentParser

from .errors import InherituneError, InvalidArgumentError, unknown_arguments, unknown_flags
from .settings import check_training_arguments

#: List flags that took comma-separated values before every entry point shared this parser; commas still work.
COMMA_SEPARATED = frozenset({"reinit", "layers", "tasks"})
#: Other spellings of a flag, kept because they read well.
FLAG_ALIASES = {"--public": "--no_private"}
#: What `transformers.hf_argparser.string_to_bool` accepts after a boolean flag.
_BOOL_WORDS = frozenset({"yes", "no", "true", "false", "t", "f", "y", "n", "1", "0"})
_YAML_SUFFIXES = (".yaml", ".yml")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where it says something (not None, False or an empty list).

    Help texts are plain prose (a dataclass field's "help"), so a literal % ("within 10%") is escaped rather than
    read as argparse's %-formatting, which would crash --help.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = (action.help or "").replace("%", "%%")
        if action.default in (None, False, []) or action.default is argparse.SUPPRESS:
            return text
        return text + " (default: %(default)s)"


class InherituneParser(HfArgumentParser):
    """`HfArgumentParser` with a YAML file, positional fields, one list syntax and one-line errors.

    `positionals` names fields that may also be given by position, in order (`("reference_model", "output_dir")`
    makes `inherit SRC OUT` work). `yaml_positional` lets the first argument be the YAML file. `summarized` are
    dataclass types whose flags `--help` only counts (`--help-all` lists them). `aliases` are this parser's own
    other spellings of its flags (`{"--push-to-hub": "--hub_repo_id"}`), read before any other meaning of the flag.
    """

    def __init__(
        self,
        dataclass_types: Sequence[type],
        *,
        prog: str,
        description: str | None = None,
        positionals: Sequence[str] = (),
        yaml_positional: bool = False,
        summarized: Sequence[type] = (),
        aliases: dict[str, str] | None = None,
    ) -> None:
        self.positionals = tuple(positionals)
        self.aliases = dict(aliases or {})
        self.yaml_positional = yaml_positional
        self.summarized = tuple(summarized)
        usage = " ".join(
            [prog, "[RECIPE.yaml]" if yaml_positional else "", *(f"[{name.upper()}]" for name in positionals)]
        )
        super().__init__(
            dataclass_types,
            prog=prog,
            description=description,
            usage=" ".join(usage.split()) + " [--config FILE] [--FLAG VALUE ...]",
            add_help=False,
            formatter_class=_HelpFormatter,
            # A prefix of a flag is a typo more often than a shorthand: `--num_lay 4` is refused with the closest
            # flag named, rather than silently read as `--num_layers`.
            allow_abbrev=False,
        )
        self.add_argument("-h", "--help", action="store_true", help="Show the settings and exit.")
        if self.summarized:
            self.add_argument("--help-all", action="store_true", help="Show every setting, Trainer's too, and exit.")
        self.add_argument(
            "--config", metavar="FILE", help="A YAML file of settings (keys are the flag names); flags override it."
        )
        for name in self.positionals:
            self.add_argument(
                f"_positional_{name}", nargs="?", default=None, metavar=name.upper(), help=f"Same as --{name}."
            )
        # Only our own list fields get the comma and repeat rules; Trainer's keep argparse's behaviour.
        self._list_types = _list_element_types(dtype for dtype in self.dataclass_types if _is_ours(dtype))

    def _add_dataclass_arguments(self, dtype: type) -> None:
        # One titled group per dataclass, so that --help reads as sections in the order given (transformers' own
        # dataclasses have no `_argument_group_name`, and untitled flags would print first).
        group = self.add_argument_group(_group_title(dtype))
        hints = typing.get_type_hints(dtype)
        for field in dataclasses.fields(dtype):
            if field.init:
                field.type = hints[field.name]
                self._parse_dataclass_field(group, field)

    # --- errors and help -----------------------------------------------------------------------------------------

    def error(self, message: str) -> NoReturn:
        """A value argparse cannot parse becomes one line the CLI prints, not a usage dump and `SystemExit`."""
        raise InvalidArgumentError(message)

    def format_help(self, full: bool = False) -> str:
        """The method's settings; with `full`, the summarized types' flags too (otherwise a pointer to them)."""
        titles = {_group_title(dtype) for dtype in self.summarized}
        groups = self._action_groups
        if not full:
            self._action_groups = [group for group in groups if group.title not in titles]
        try:
            text = super().format_help()
        finally:
            self._action_groups = groups
        if full or not self.summarized:
            return text
        hidden = [group for group in groups if group.title in titles]
        count = sum(len(group._group_actions) for group in hidden)
        names = ", ".join(group.title for group in hidden)
        return (
            f"{text}\n{names}: {count} more flags (e.g. --output_dir, --max_steps, --learning_rate, "
            "--per_device_train_batch_size, --eval_strategy, --bf16); --help-all lists them.\n"
        )

    # --- parsing -------------------------------------------------------------------------------------------------

    def config_file(self, argv: Sequence[str]) -> tuple[str | None, list[str]]:
        """The YAML file named by `--config FILE` (or, with `yaml_positional`, first), and the other arguments."""
        argv = list(argv)
        found: list[str] = []
        if self.yaml_positional and argv and argv[0].endswith(_YAML_SUFFIXES) and not argv[0].startswith("-"):
            found.append(argv.pop(0))
        rest: list[str] = []
        tokens = iter(argv)
        for token in tokens:
            if token == "--config":
                value = next(tokens, None)
                if value is None:
                    raise InvalidArgumentError("--config needs a YAML file: --config FILE.")
                found.append(value)
            elif token.startswith("--config="):
                found.append(token.split("=", 1)[1])
            else:
                rest.append(token)
        if len(found) > 1:
            raise InvalidArgumentError(f"Give one YAML file, got {' and '.join(found)}.")
        return (found[0] if found else None), rest

    @staticmethod
    def read_config(path: str | Path) -> dict[str, Any]:
        """The YAML mapping in `path`, or one line saying why it cannot be read."""
        import yaml

        try:
            settings = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as err:
            raise InvalidArgumentError(f"Cannot read the YAML file {path}: {err}".replace("\n", " ")) from err
        if settings is None:
            return {}
        if not isinstance(settings, dict):
            raise InvalidArgumentError(f"The YAML file {path} must be a mapping of setting: value.")
        return settings

    def parse(
        self, argv: Sequence[str] | None = None, config: dict[str, Any] | None = None, source: str = ""
    ) -> tuple[Any, ...]:
        """The dataclasses, filled from `config` (or the YAML file in `argv`), then from the flags in `argv`.

        `config` is for a caller that builds the settings itself (a recipe layers a budget over its YAML); then
        `source` names where they came from, for the unknown-key message.
        """
        argv = list(sys.argv[1:] if argv is None else argv)
        if config is None:
            path, argv = self.config_file(argv)
            config, source = (self.read_config(path), path) if path else ({}, "")
        self.set_defaults(**self._check_config(config, source))
        self._help(argv)  # after the YAML, so that --help shows the defaults it sets
        namespace = self._namespace(argv)
        outputs = []
        for dtype in self.dataclass_types:
            names = {f.name for f in dataclasses.fields(dtype) if f.init}
            values = {name: getattr(namespace, name) for name in names}
            if not _is_ours(dtype):  # Trainer's own checks raise a bare ValueError mid-construction
                check_training_arguments(argparse.Namespace(**values))
            try:
                outputs.append(dtype(**values))
            except ValueError as err:
                if isinstance(err, InherituneError):
                    raise
                raise InvalidArgumentError(" ".join(str(err).split())) from None
        return tuple(outputs)

    def peek(
        self, argv: Sequence[str], config: dict[str, Any], names: Sequence[str], source: str = ""
    ) -> dict[str, Any]:
        """The values the settings `names` would take from `config` and the flags in `argv`, parsed as `parse` parses
        them but without building the dataclasses: for the settings that choose what the others default to (a
        recipe's `budget` and `smoke`), read before the settings they change are checked."""
        self.set_defaults(**self._check_config(config, source))
        namespace = self._namespace([a for a in argv if a not in ("-h", "--help", "--help-all")])
        return {name: getattr(namespace, name) for name in names}

    def _namespace(self, argv: list[str]) -> argparse.Namespace:
        """The flags in `argv`, over the defaults set, as one namespace with the positionals in their fields."""
        argv = self._normalize(argv)
        namespace, rest = self.parse_known_intermixed_args(argv)
        if rest:
            raise unknown_flags(rest, self)
        for name in self.positionals:
            value = getattr(namespace, f"_positional_{name}")
            delattr(namespace, f"_positional_{name}")
            if value is None:
                continue
            if self._given(name, argv):
                raise InvalidArgumentError(f"{name.upper()} given twice: by position and as --{name}.")
            setattr(namespace, name, value)
        return namespace

    def _help(self, argv: list[str]) -> None:
        flags = argv[: argv.index("--")] if "--" in argv else argv
        if "--help-all" in flags and self.summarized:
            print(self.format_help(full=True))
            raise SystemExit(0)
        if "-h" in flags or "--help" in flags:
            print(self.format_help())
            raise SystemExit(0)

    def _check_config(self, config: dict[str, Any], source: str) -> dict[str, Any]:
        """`config` with every key checked against the fields, and list values in the flags' form."""
        names = sorted({f.name for dtype in self.dataclass_types for f in dataclasses.fields(dtype) if f.init})
        unknown = sorted(set(config) - set(names))
        if unknown:
            raise unknown_arguments(unknown, names, "setting", source)
        settings = dict(config)
        for name, kind in self._list_types.items():
            value = settings.get(name)
            if value is None:
                continue
            values = value if isinstance(value, list) else [value]
            if name in COMMA_SEPARATED:
                values = [part.strip() for v in values for part in str(v).split(",") if part.strip()]
            try:
                settings[name] = [kind(v) for v in values]
            except (TypeError, ValueError) as err:
                raise InvalidArgumentError(f"{name} in {source or 'the settings'}: {err}") from err
        return settings

    def _normalize(self, argv: list[str]) -> list[str]:
        """`argv` in the one syntax argparse reads: canonical flag names, list values split and merged, and
        `true` after a boolean flag that is followed by a positional (so `--overwrite SRC OUT` keeps working)."""
        groups: list[list[str]] = []
        lists: dict[str, list[str]] = {}
        i = 0
        while i < len(argv):
            token = argv[i]
            i += 1
            if token == "--":
                groups.append(argv[i - 1 :])
                break
            flag, eq, inline = token.partition("=")
            if not flag.startswith("--"):
                groups.append([token])
                continue
            known = self._option_string_actions
            flag = self.aliases.get(flag, flag)
            if flag not in known and FLAG_ALIASES.get(flag) in known:
                flag = FLAG_ALIASES[flag]
            action = self._option_string_actions.get(flag)
            if action is None:
                groups.append([flag + eq + inline])
            elif action.nargs == "+":
                values = [inline] if eq else []
                while i < len(argv) and not argv[i].startswith("-"):
                    values.append(argv[i])
                    i += 1
                if action.dest in COMMA_SEPARATED and action.dest in self._list_types:
                    values = [part.strip() for value in values for part in value.split(",") if part.strip()]
                if action.dest in lists and action.dest in self._list_types:
                    lists[action.dest].extend(values)
                else:
                    lists[action.dest] = [flag, *values]
                    groups.append(lists[action.dest])
            elif action.nargs == "?" and action.const is True and not eq:
                following = argv[i] if i < len(argv) else None
                bare = following is None or following.startswith("-") or following.lower() not in _BOOL_WORDS
                groups.append([flag, "true"] if bare else [flag])
            else:
                groups.append([flag + eq + inline])
        return [token for group in groups for token in group]

    def _given(self, name: str, argv: list[str]) -> bool:
        options = [o for o in self._option_string_actions if self._option_string_actions[o].dest == name]
        return any(token.split("=", 1)[0] in options for token in argv)


def _is_ours(dtype: type) -> bool:
    return dtype.__module__.split(".")[0] == "inheritune_hf"


def _group_title(dtype: type) -> str:
    return getattr(dtype, "_argument_group_name", f"{dtype.__module__}.{dtype.__name__}")


def _list_element_types(dataclass_types: Iterable[type]) -> dict[str, type]:
    """{field name: element type} of the `list[X]` (or `list[X] | None`) fields."""
    found = {}
    for dtype in dataclass_types:
        hints = typing.get_type_hints(dtype)
        for f in dataclasses.fields(dtype):
            kind = hints.get(f.name)
            if typing.get_origin(kind) in (typing.Union, types.UnionType):
                kind = next((arg for arg in typing.get_args(kind) if arg is not type(None)), kind)
            if typing.get_origin(kind) is list:
                (found[f.name],) = typing.get_args(kind) or (str,)
    return found


__all__ = ["COMMA_SEPARATED", "FLAG_ALIASES", "InherituneParser"]
