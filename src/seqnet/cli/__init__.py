"""The ``seqnet`` command line: train, sample, eval."""
