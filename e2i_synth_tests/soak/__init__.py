"""Slow reliability tests (crash safety under SIGKILL at scale), marked soak by the root
conftest: run with `make soak`."""
