"""The ``diod`` command line: option parsing and printing only; the work is in ``stages``."""
