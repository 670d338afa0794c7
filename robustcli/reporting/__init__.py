"""Tables and figures built from what MLflow holds."""
