"""Command-line front ends (argument parsing and printing only; the work lives in the wings). Never uploaded."""
