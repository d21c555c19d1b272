"""A module that no task row may cause a worker to import."""

IMPORTED = True


def boom() -> None:
    raise AssertionError("a worker ran code that was never registered")
