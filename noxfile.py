"""The test suite on every supported interpreter, and on the oldest versions setup.cfg allows (issue 23).

Run through the Makefile, which bootstraps nox and uv into `.venv-tools`:

    make test-pythons   # nox -s tests: the locked versions (constraints.txt) on Python 3.11, 3.12 and 3.13
    make test-oldest    # nox -s tests-oldest: every `>=` bound in setup.cfg installed exactly (`==`)

`make test` stays the everyday command (one interpreter, `.venv`); these sessions are how the README's table of
tested interpreters and lower bounds was produced. Each session is its own venv under `.nox/`; a torch wheel that
the index has only as a CUDA build (several GB) works on the CPU, and uv's cache shares one download between venvs.
Extra arguments go to pytest: `make test-pythons ARGS="tests/test_inherit.py -x"`.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests"]
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent
PYTHONS = ["3.11", "3.12", "3.13"]
# The oldest interpreter the lower bounds install on: transformers >= 5.23 (TrainingArguments.activation_checkpointing,
# which the recipes set) requires Python 3.11; on 3.10 the newest transformers is 5.20.2.
OLDEST_PYTHON = "3.11"
EXTRAS = ".[eval,plot,dev]"


def lower_bounds() -> list[str]:
    """Every `name>=X` requirement of setup.cfg (install_requires and extras) as `name==X`.

    Only the bounded packages are pinned (uv's `lowest-direct` would also take tqdm 1.0 and a PyYAML that no longer
    builds); what they pull in resolves to the newest versions those pins allow, as a user's `pip install` would.
    """
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    for extra in ("eval", "plot", "dev"):
        lines += config["options.extras_require"][extra].splitlines()
    pins = []
    for line in lines:
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*>=\s*([^,\s;]+)", line)
        if match:
            pins.append(f"{match[1]}=={match[2]}")
    return pins


def _print_versions(session: nox.Session) -> None:
    session.run(
        "python",
        "-c",
        "import platform, importlib.metadata as m; print('versions: Python', platform.python_version(), *("
        "f'{p} {m.version(p)}' for p in ('torch', 'transformers', 'accelerate', 'datasets', 'huggingface_hub', "
        "'tokenizers', 'safetensors', 'lm_eval', 'numpy')))",
    )


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The locked versions (constraints.txt, with per-interpreter markers) and the whole suite."""
    # torch first and pinned, as `make install` does: left to the resolver it would be whatever build the index
    # serves newest.
    session.install("-c", "constraints.txt", "torch")
    session.install("-c", "constraints.txt", "-e", EXTRAS)
    _print_versions(session)
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session(name="tests-oldest", python=OLDEST_PYTHON)
def tests_oldest(session: nox.Session) -> None:
    """setup.cfg's lower bounds, installed exactly: the claim "passes with X or newer" tested at X."""
    pins = lower_bounds()
    torch = [pin for pin in pins if pin.startswith("torch==")]
    session.install(*torch)
    session.install("-e", EXTRAS, *pins)
    _print_versions(session)
    session.run("python", "-m", "pytest", "-q", *session.posargs)
