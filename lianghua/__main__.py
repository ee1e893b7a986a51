"""`python -m lianghua`: the `lianghua` command (see lianghua/cli.py)."""

from lianghua.cli import entry

if __name__ == "__main__":
    entry()
