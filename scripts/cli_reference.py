"""Write docs/cli.md, the reference of every `bpr` command and option, from the command's own parser.

    python scripts/cli_reference.py            # rewrite docs/cli.md
    python scripts/cli_reference.py --check    # exit 1 if docs/cli.md is not what the parser says

tests/bpr/test_cli.py runs the check, so the reference cannot drift from the command.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "cli.md"

INTRO = """# The `bpr` command

Every command below also prints its help with `--help`. Imports read and check the whole source
before they write anything, in one transaction: a bad file changes nothing, and the error names the
file and the line or element. Long commands (import, train, detect, experiment) show progress; Ctrl+C
or SIGTERM stops training and detection at the end of the current batch, and the same command
continues. The [guide](guide.md) explains the workflow; this page lists what each command takes.

This page is written from the command's own parser by `python scripts/cli_reference.py`; a test
fails when the two differ.
"""


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, help, parser) of each subcommand, in the order they were added."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            out += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return out


def _flag(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.metavar or action.dest}`"
    name = max(action.option_strings, key=len)
    if action.nargs == 0:
        return f"`{name}`"
    metavar = action.metavar or (("{" + ",".join(map(str, action.choices)) + "}") if action.choices
                                 else action.dest.upper())
    repeat = " ..." if action.nargs in ("+", "*") else ""
    return f"`{name} {metavar}{repeat}`"


def _default(action: argparse.Action) -> str:
    if not action.option_strings or action.nargs == 0 or action.default in (None, [], argparse.SUPPRESS):
        return ""
    default = action.default
    if isinstance(default, list):
        default = ",".join(":".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in default)
    return f"`{default}`"


def _help(action: argparse.Action) -> str:
    text = (action.help or "") % {"default": action.default, "prog": ""} if action.help else ""
    return _escape(" ".join(text.split()))


def _escape(text: str) -> str:
    """Markdown-safe in a table cell: pipes, angle brackets and asterisks shown as typed."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*")


def _section(title: str, summary: str, parser: argparse.ArgumentParser) -> list[str]:
    subcommands = _subcommands(parser)
    if subcommands:
        lines = []
        for name, help_text, sub in subcommands:
            lines += _section(f"{title} {name}", help_text, sub)
        return lines
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    positionals = [a for a in actions if not a.option_strings]
    usage = " ".join([title] + [(a.metavar or a.dest).upper() + (" ..." if a.nargs in ("+", "*") else "")
                                for a in positionals] + ["[options]"] * any(a.option_strings for a in actions))
    summary = _escape(summary[:1].upper() + summary[1:])
    lines = [f"## {title}", "", summary + ("." if summary else ""), "",
             f"    {usage}", ""]
    if actions:
        lines += ["| argument | what it does | default |", "|---|---|---|"]
        for a in actions:
            text, default = _help(a), _default(a)
            if default:  # the column shows it: not again in the text
                text = re.sub(r"[;,]? *\(?default:? [^;)]*\)?$", "", text).rstrip()
            lines.append(f"| {_flag(a)} | {text} | {default} |")
        lines.append("")
    return lines


def render() -> str:
    from bpr.cli import build_parser

    parser = build_parser()
    lines = INTRO.splitlines() + [""]
    for name, help_text, sub in _subcommands(parser):
        lines += _section(f"bpr {name}", help_text, sub)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    text = render()
    if args.check:
        if REFERENCE.read_text() != text:
            print(f"{REFERENCE} is out of date: run python scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    REFERENCE.write_text(text)
    print(f"wrote {REFERENCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
