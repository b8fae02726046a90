"""The media API's storage: the facade (``database.py``), the tables, and the media store."""
