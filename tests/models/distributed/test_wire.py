"""The header and the SAVE/RESTORE payload survive the trip through MLX arrays."""

from models.distributed.wire import Command, Header, payload_array, payload_value


def test_a_header_round_trips_with_the_cache_it_continues():
    header = Header(Command.RUN, 5, 120, "bfloat16", 8, 32, cache=7)
    again = Header.from_array(header.to_array())
    assert again == header and again.kv == (8, 32)
    assert Header(Command.SAVE).kv is None


def test_a_payload_round_trips_as_json():
    value = {"id": "42", "keys": [200, [99, "ab12", 3], 7], "budget": 10**10, "text": "é"}
    array = payload_array(value)
    assert str(array.dtype) == "mlx.core.uint8"
    assert payload_value(array) == value
