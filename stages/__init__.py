"""The diod pipeline library: one module per stage plus the shared parts they stand on.

The ``diod`` command (package ``diodcli``) only parses options and prints; everything that
computes lives here so that tests and notebooks call the same functions the CLI calls.
"""

__version__ = "0.1.0"
