"""The `hiclr` command line: a thin click layer over the `hiclr` library."""
