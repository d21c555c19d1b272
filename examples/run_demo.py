"""Migrate the demo's database, then serve the demo project with uvicorn.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test python examples/run_demo.py

``PORT`` (default 8000) and ``HOST`` (default 127.0.0.1) choose where it listens. Tasks run
inside this uvicorn process: its lifespan starts autotask's runtime and stops it on Ctrl-C.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent


def main() -> None:
    os.chdir(EXAMPLES)
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")

    import django
    from django.core.management import call_command
    from django.db import connections

    django.setup()
    call_command("migrate", interactive=False, verbosity=1)
    connections.close_all()  # the server opens its own connections when it needs them

    import uvicorn

    uvicorn.run(
        "demo.asgi:application",
        host=os.environ.get("HOST", "127.0.0.1"),
        port=int(os.environ.get("PORT", "8000")),
        lifespan="on",
        app_dir=str(EXAMPLES),
    )


if __name__ == "__main__":
    main()
