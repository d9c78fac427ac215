"""Names from other tools as topic segments (``twin.loaders.names``), checked against the topic rules themselves."""

import pytest

from streams import topics
from twin.loaders.names import topic_segment, unique_segments


@pytest.mark.parametrize(("name", "segment"), [
    ("Summary Grid", "Summary-Grid"), ("Load R1", "Load-R1"), ("  a//b  c ", "a-b-c"), ("LOAD_1.x-2", "LOAD_1.x-2"),
    ("Grüne Wiese #3", "Gr-ne-Wiese-3"), ("///", "unnamed"),
])
def test_topic_segment(name: str, segment: str) -> None:
    assert topic_segment(name) == segment
    assert topics.meter(segment, segment)  # accepted by the topic rules (raises ValueError otherwise)


def test_unique_segments_number_the_repeats() -> None:
    assert unique_segments(["Load 1", "Load-1", "Load/1", "x"]) == ["Load-1", "Load-1-2", "Load-1-3", "x"]
