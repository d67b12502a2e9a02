"""Pure planning: what nginx should have, and what changed. No I/O here."""
