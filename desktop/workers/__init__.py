"""Work off the UI thread: the one QObject that owns MLX, image decoding, background tasks."""
