"""watcher: early warning of forced repatriations of North Korean escapees."""

__version__ = "0.1.0"
