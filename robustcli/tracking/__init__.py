"""Where studies are kept: MLflow (runs, metrics, tags), read back for every report and resume."""
