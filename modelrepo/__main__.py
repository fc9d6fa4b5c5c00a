"""`python -m modelrepo decisions {show,pin,clear}`: operators' decisions, from any machine that mounts the repository.

The admin API records the same decisions (after trying them on the worker that takes the call);
this is for clearing one, and for deployments whose servers mount the repository read-only.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modelrepo.decisions import Decision, read_decision, record_decision
from modelrepo.paths import RepositoryError
from modelrepo.store import list_models, verify


def _show(args: argparse.Namespace) -> str:
    names = [args.name] if args.name else list_models(args.repository)
    lines = []
    for name in names:
        decision = read_decision(args.repository, name)
        lines.append(f"{name}: {decision.model_dump_json() if decision else 'no decision (MODEL_VERSION, else the newest)'}")
    return "\n".join(lines)


def _pin(args: argparse.Namespace) -> str:
    verify(args.repository, args.name, args.version)  # a version that cannot serve is never pinned
    record_decision(args.repository, args.name, Decision(pinned=args.version))
    return f"{args.name}: pinned to version {args.version}"


def _clear(args: argparse.Namespace) -> str:
    record_decision(args.repository, args.name, None)
    return f"{args.name}: decision cleared (servers follow MODEL_VERSION, else the newest version)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m modelrepo", description=__doc__)
    parser.add_argument("--repository", type=Path, default=Path("models"), help="model repository (default %(default)s)")
    decisions = parser.add_subparsers(dest="command", required=True).add_parser("decisions", help="operators' pins and unloads")
    sub = decisions.add_subparsers(dest="action", required=True)
    p = sub.add_parser("show", help="print each model's decision")
    p.add_argument("name", nargs="?", help="one model (default: every model)")
    p.set_defaults(func=_show)
    p = sub.add_parser("pin", help="serve this version on every server (it must verify)")
    p.add_argument("name")
    p.add_argument("version", type=int)
    p.set_defaults(func=_pin)
    p = sub.add_parser("clear", help="remove the model's decision: servers follow MODEL_VERSION, else the newest")
    p.add_argument("name")
    p.set_defaults(func=_clear)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        print(args.func(args))
    except RepositoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
