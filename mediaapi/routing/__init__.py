"""The media API's HTTP routes."""
