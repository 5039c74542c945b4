"""Recipes that produce what the service ships (run by nothing that serves)."""
