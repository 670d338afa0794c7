"""Tasks that ship with the core, so it is tested and demonstrated without any plugin."""
