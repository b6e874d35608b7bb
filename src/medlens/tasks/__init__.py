"""One module per task: its loss, metrics and training step."""
