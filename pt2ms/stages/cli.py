"""What the numbered scripts share: the common arguments and turning errors into one line and an exit code."""

import argparse
import contextlib
import os
import signal
import sys
import traceback

from pt2ms.errors import Pt2MsError

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 4  # a bug (ours or a library's): not 1, which stage 4 uses for "the models differ"
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(BaseException):
    """SIGTERM (what `timeout`, schedulers and containers send) arrived: unwind like Ctrl-C."""


def parser(description):
    """An argument parser with the options every stage takes."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--config", help="TOML config of the run (default: the bundled EfficientNet-b0 example)")
    result.add_argument("--trust-pickle", action="store_true",
                        help="let a .pth run the code it carries (only for files you trust; default: refuse)")
    result.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    return result


# Locks on output folders taken by load() during a run; run() releases them when the stage ends.
_held_locks = contextlib.ExitStack()


def load(args, make_missing=True):
    """The config named by --config (or the default example), with command-line overrides applied.

    Also locks the run's output folder, so that a second run on the same config is refused while this one writes,
    and (unless `make_missing` is False) writes a bundled example's seeded checkpoint when it is missing, so that
    any stage, run first on a fresh clone or a fresh install, finds its input.
    """
    from pt2ms.config import load_config
    from pt2ms.formats.files import locked_folder
    from pt2ms.running.factories import check_factories
    from pt2ms.stages.demo import make_missing_example

    config = load_config(args.config)
    check_factories(config)  # a typo in a factory's module or name, found before either framework is imported
    if args.trust_pickle:
        config.torch.trust_pickle = True
    _held_locks.enter_context(locked_folder(config.output_dir))
    for path in make_missing_example(config) if make_missing else ():
        print(f"wrote {path} (it was missing: the bundled example's seeded input, made now)")
    return config


def _where(error, args):
    """The file an unexpected error is about: the one it names, else the config."""
    from pt2ms.config import DEFAULT_CONFIG

    named = getattr(error, "filename", None)
    return named if named else os.path.abspath(args.config or DEFAULT_CONFIG)


def _why(error):
    if isinstance(error, OSError):
        return error.strerror or str(error)
    if isinstance(error, RecursionError):
        return "nested too deeply to process (RecursionError)"
    if isinstance(error, MemoryError):
        return "out of memory (MemoryError); is a size in the input larger than intended?"
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:200]}" if text else type(error).__name__


def _stage_name(stage):
    """"1_show.py" for a numbered script's stage function, else the function's name ("make-example")."""
    script = os.path.basename(stage.__code__.co_filename)
    return script if script[:1].isdigit() else stage.__name__.replace("_", "-")


def _on_sigterm(signum, frame):
    raise Terminated()


def run(stage, argv, build_parser):
    """Parse `argv`, run `stage(args)`, and map failures to exit codes: 2 for bad input, 130/143 for Ctrl-C/SIGTERM.

    Errors of the operating system (a read-only folder, a full disk, a symlink loop), text that is not valid
    Unicode, and inputs nested too deeply or too large for memory are bad input too: one line naming the file.
    Any other exception is unexpected: one line naming the stage, exit 4 (--debug shows the traceback).
    """
    args = build_parser().parse_args(argv)
    previous = _install(signal.SIGTERM, _on_sigterm)
    try:
        return stage(args)
    except Pt2MsError as error:
        return _fail(args, str(error), getattr(error, "exit_code", EXIT_BAD_INPUT))  # 3: a model's forward failed
    except (OSError, UnicodeError, RecursionError, MemoryError) as error:
        return _fail(args, f"{_where(error, args)}: {_why(error)}")
    except Exception as error:  # noqa: BLE001 - the last resort: one line instead of a traceback
        hint = "" if args.debug else " (rerun with --debug for the traceback)"
        return _fail(args, f"internal error in {_stage_name(stage)}: {_why(error)}{hint}", EXIT_INTERNAL)
    except KeyboardInterrupt:
        print("interrupted: earlier outputs are untouched", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("terminated: earlier outputs are untouched", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        _install(signal.SIGTERM, previous)
        _held_locks.close()


def _install(signum, handler):
    """Set a signal handler where Python allows it (the main thread); returns the previous one."""
    if handler is None:
        return None
    try:
        return signal.signal(signum, handler)
    except ValueError:  # not the main thread
        return None


def _fail(args, message, code=EXIT_BAD_INPUT):
    if args.debug:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)
    return code


def wrote(path):
    print(f"wrote {path}")
