"""Stored conversations: SQLite, images, search, export and import (no Qt)."""
