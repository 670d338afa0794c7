"""The Typer face of robust: parse, call the core, render with rich. No torch or MLflow at import."""
