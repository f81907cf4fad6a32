"""Paths every test folder shares (tests live one or two levels below the repository root)."""

import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
