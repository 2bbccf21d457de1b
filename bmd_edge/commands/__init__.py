"""Typer command functions, one module per area; heavy imports stay inside the functions."""
