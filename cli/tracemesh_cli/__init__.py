"""The `tracemesh` command line: one entry point for every user-facing job."""
