"""The edges that touch the machine: files and subprocesses. Sinks receive these."""
