"""Where instances run (in process for now) and the session that logs them."""
