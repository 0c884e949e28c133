"""Errors of the front door that every command shares."""


class UsageError(Exception):
    """Bad input detected after parsing; reported like an argparse error (exit 2)."""
