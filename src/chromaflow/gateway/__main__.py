"""``python -m chromaflow.gateway --upstream URL --key-file PATH --port 8000`` (what ``chromaflow serve --gateway`` runs)."""

from chromaflow.gateway.server import main

raise SystemExit(main())
