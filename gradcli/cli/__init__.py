"""The Typer command line: parse, call the core, render; exit codes in one place."""
