"""`python -m xfmr synth ...`: command-line entry points of the pure-Python package."""

import sys

USAGE = "usage: python -m xfmr synth [--help | options]  (see python -m xfmr synth --help)\n"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "synth":
        from . import synth
        return synth.main(rest)
    sys.stderr.write(f"python -m xfmr: unknown command {command!r}\n" + USAGE)
    return 2


if __name__ == "__main__":
    sys.exit(main())
