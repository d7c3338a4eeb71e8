"""`python -m splittune.cli`: the `splittune` command (what `run transport=grpc` starts its devices with)."""

from splittune.cli import app

app()
