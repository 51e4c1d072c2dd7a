"""Ray runtime: actors, pools, the embedded server and run sessions."""
