"""Models on demand: which models a server offers (catalog.py, presets.py) and the registry that
loads and unloads them (registry.py)."""
