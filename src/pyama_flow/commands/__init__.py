"""Sub-commands of ``pyama-flow``: each module defines ``add_parser(subparsers)``
that registers its parser and sets ``func`` (called with the parsed args)."""
