"""What the numbered scripts share: the common arguments and turning errors into one line and an exit code."""

import argparse
import contextlib
import os
import signal
import sys
import traceback

from pt2ms.errors import Pt2MsError

EXIT_BAD_INPUT = 2
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


def load(args):
    """The config named by --config (or the default example), with command-line overrides applied.

    Also locks the run's output folder, so that a second run on the same config is refused while this one writes.
    """
    from pt2ms.config import load_config
    from pt2ms.formats.files import locked_folder

    config = load_config(args.config)
    if args.trust_pickle:
        config.torch.trust_pickle = True
    _held_locks.enter_context(locked_folder(config.output_dir))
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
    return f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"


def _on_sigterm(signum, frame):
    raise Terminated()


def run(stage, argv, build_parser):
    """Parse `argv`, run `stage(args)`, and map failures to exit codes: 2 for bad input, 130/143 for Ctrl-C/SIGTERM.

    Errors of the operating system (a read-only folder, a full disk, a symlink loop), text that is not valid
    Unicode, and inputs nested too deeply or too large for memory are bad input too: one line naming the file.
    """
    args = build_parser().parse_args(argv)
    previous = _install(signal.SIGTERM, _on_sigterm)
    try:
        return stage(args)
    except Pt2MsError as error:
        return _fail(args, str(error), getattr(error, "exit_code", EXIT_BAD_INPUT))  # 3: a model's forward failed
    except (OSError, UnicodeError, RecursionError, MemoryError) as error:
        return _fail(args, f"{_where(error, args)}: {_why(error)}")
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
