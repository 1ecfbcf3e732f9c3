"""Fixtures for the conversation tests: a tiny decoded image."""

import pytest

from tests.conftest import image_bytes


@pytest.fixture
def tiny_image():
    from models.inference.images import load_image_bytes

    return load_image_bytes(image_bytes(8, 8), "tiny.png")
