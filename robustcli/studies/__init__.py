"""The paper's studies beside the selection itself, each a library function the CLI renders:
``nas`` (a neural-architecture search with Optuna, then the robustness of its picks)."""
