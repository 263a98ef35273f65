"""GitHub Actions workflow files that pywharf ships to its users (package data)."""
