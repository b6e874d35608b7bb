"""The public API: plain functions composing the layers below (the CLI and the service call these)."""
