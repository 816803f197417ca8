"""How the message browser shows bytes: pretty JSON when JSON, text when text, hex when binary."""

from __future__ import annotations

from topics.messages import PREVIEW_BYTES, render_bytes


def test_json_is_pretty_printed():
    view = render_bytes(b'{"b":1,"a":[1,2]}')
    assert view["kind"] == "json" and view["text"] == '{\n  "b": 1,\n  "a": [\n    1,\n    2\n  ]\n}'


def test_text_binary_null_and_truncation():
    assert render_bytes(b"hello world") == {"kind": "text", "text": "hello world", "truncated": False}
    assert render_bytes(b"{not json")["kind"] == "text"
    binary = render_bytes(b"\x00\x01\xfe\xff")
    assert binary["kind"] == "binary" and binary["text"] == "00 01 fe ff"
    assert render_bytes(None)["kind"] == "null"
    big = render_bytes(b"x" * (PREVIEW_BYTES + 10))
    assert big["truncated"] and len(big["text"]) == PREVIEW_BYTES
