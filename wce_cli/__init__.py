"""Command-line client for tenants: live campaign progress, recipient logs, CSV export (HTTP only)."""
