"""Slow reliability tests (crash safety under SIGKILL at scale): run with `make soak`."""
