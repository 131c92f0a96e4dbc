"""The real-time prediction service (``make serve``): see ``app.py``."""
