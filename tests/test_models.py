"""Row helpers: ids that sort as they were made."""

from __future__ import annotations

from gateway.models import new_id


def test_ids_sort_as_strings_in_the_order_they_were_made() -> None:
    ids = [new_id("apr") for _ in range(5000)]  # many share a millisecond
    assert sorted(ids) == ids
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 30 and i == i.lower() for i in ids)
