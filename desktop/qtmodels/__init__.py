"""Qt item models that adapt Qt-free state for the views."""
