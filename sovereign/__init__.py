"""The ``sovereign`` command line: a thin layer over the library packages."""
