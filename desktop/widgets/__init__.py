"""Widgets that draw: transcript, composer, sidebar, menus, panels."""
