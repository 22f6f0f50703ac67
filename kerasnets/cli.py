"""The ``kerasnets`` command line: ``info``, ``train``, ``evaluate``, ``export``, ``predict``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = ["main", "preset_table"]


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def preset_table(names: Sequence[str] | None = None) -> list[dict]:
    """Rows of ``{"preset", "input_size", "params", "flops"}`` for the given (default: all) presets."""
    import keras

    from kerasnets.presets import PRESETS, build
    from kerasnets.profile import profile

    rows = []
    for name in names or list(PRESETS):
        model = build(name)
        stats = profile(model)
        rows.append({"preset": name, "input_size": stats["input_size"][0], **{k: stats[k] for k in ("params", "flops")}})
        del model
        keras.backend.clear_session()
    return rows


def _cmd_info(args: argparse.Namespace) -> int:
    from kerasnets.presets import PRESETS

    names = None
    if args.preset:
        key = args.preset.lower()
        if key not in PRESETS:
            print(f"error: unknown preset {args.preset!r}; allowed: {', '.join(sorted(PRESETS))}", file=sys.stderr)
            return 2
        names = [key]
    print(f"| {'preset':<20} | {'input':>5} | {'params':>12} | {'FLOPs (mult-adds)':>17} |")
    print(f"|{'-' * 22}|{'-' * 7}|{'-' * 14}|{'-' * 19}|")
    for row in preset_table(names):
        print(f"| {row['preset']:<20} | {row['input_size']:>5} | {row['params']:>12,} | {row['flops'] / 1e9:>16.3f}G |")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="kerasnets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print params and FLOPs of every preset (or one)")
    info.add_argument("preset", nargs="?", help="one preset name, e.g. efficientnetb0")
    info.set_defaults(func=_cmd_info)
    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


_EXTRA_COMMANDS: list = []


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kerasnets`` console script."""
    _quiet_tensorflow()
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
