"""The kio names brokerd's codec adapter relies on beyond kio's public API.

brokerd/protocol/kio_adapter.py imports a few private kio names (field introspection, the
nullable-entity marker, the native field reader) and hides ``hypothesis`` while kio's
primitives load. pyproject.toml pins kio's version range for them; these tests fail loudly,
naming what moved, when a kio release changes any of it.
"""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from brokerd.protocol import kio_adapter

REPO = Path(__file__).resolve().parents[2]


def test_private_kio_names_still_exist() -> None:
    missing = []
    for module_name, names in kio_adapter.PRIVATE_KIO_NAMES.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing.append(f"{module_name} ({exc})")
            continue
        missing += [f"{module_name}.{name}" for name in names if not hasattr(module, name)]
    assert not missing, (
        f"kio {version('kio')} no longer has what brokerd/protocol/kio_adapter.py uses: {missing}; "
        "adapt the adapter or pin kio to a release that has them (pyproject.toml)"
    )


def test_installed_kio_is_in_the_pinned_range() -> None:
    text = (REPO / "pyproject.toml").read_text()
    pin = next(line.strip().strip('",') for line in text.splitlines() if line.strip().startswith('"kio'))
    low, high = (part.split("=")[-1].lstrip("<") for part in pin.removeprefix("kio").split(","))
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
    assert as_tuple(low) <= as_tuple(version("kio")) < as_tuple(high), (pin, version("kio"))


def test_field_introspection_classifies_a_known_schema() -> None:
    """The private introspection answers as the adapter expects on a schema we know."""
    from kio.serial._introspect import EntityTupleField, classify_field

    cls = kio_adapter.request_class(3, 12)  # Metadata v12: topics is a nullable entity array
    field = next(f for f in dataclasses.fields(cls) if f.name == "topics")
    assert isinstance(classify_field(field), EntityTupleField)


def test_request_round_trip_through_the_adapter() -> None:
    """Encode with kio's writer, decode with the adapter's tolerant reader (the private parts)."""
    cls = kio_adapter.request_class(3, 12)
    mod = kio_adapter.request_module(3, 12)
    topic = kio_adapter.build(mod.MetadataRequestTopic, name="t", topic_id=None)
    request = kio_adapter.build(cls, topics=(topic,), allow_auto_topic_creation=False,
                                include_topic_authorized_operations=True)
    decoded = kio_adapter.decode_request(3, 12, kio_adapter.encode(request), 0)
    assert decoded.topics[0].name == "t"
    assert decoded.include_topic_authorized_operations is True


def test_kio_loads_without_hypothesis() -> None:
    """Hiding hypothesis while kio's primitives load keeps ~1 s and ~10 MB out of start-up."""
    code = "import sys; import brokerd.protocol.kio_adapter; print('hypothesis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=True)  # fmt: skip
    assert out.stdout.strip() == "False", out.stderr
