"""The `tlbench` subcommands, parsed by `bench.cli`: what they share."""

EXIT_FAILED_RUN, EXIT_BAD_INPUT = 1, 2  # interrupted: 128 + the signal (130 for SIGINT)
# sysexits.h: EX_IOERR, a result file could not be written; EX_TEMPFAIL, another suite holds
# the CPUs (try again later)
EXIT_CANNOT_WRITE, EXIT_BUSY = 74, 75
