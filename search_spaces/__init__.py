"""Search-space YAML files of the built-in strategies, read with importlib.resources."""
