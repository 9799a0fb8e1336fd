"""The embedded broker's storage is formatted with an id its tool accepts."""

from harness.stack.kafka import new_cluster_id


def test_cluster_id_never_looks_like_an_option() -> None:
    ids = [new_cluster_id() for _ in range(5000)]   # about 78 would start with "-" if drawn plainly
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
