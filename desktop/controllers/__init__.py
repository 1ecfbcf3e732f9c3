"""Window logic that is not drawing: which conversation is open, the model library."""
