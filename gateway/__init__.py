"""The gateway: Tilesmith's public API, composing the backend services into jobs."""
