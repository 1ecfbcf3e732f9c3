"""Modal dialogs: settings, model manager, license."""
