"""Documents in the chat: PDFs read page by page, as images and text layers (no Qt)."""
