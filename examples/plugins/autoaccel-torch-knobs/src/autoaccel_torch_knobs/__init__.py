"""An example autoaccel plugin: optimizer kernels (training) and torch inference settings (serving)."""
