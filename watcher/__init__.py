"""watcher: early warning of forced repatriations of North Korean escapees."""

__version__ = "0.1.0"

#: The database when neither --db, WATCHER_DATABASE_URL nor settings.database_url names one.
#: Here rather than in `watcher.store`, so that `watcher --help` shows it without importing
#: SQLAlchemy.
DEFAULT_DATABASE_URL = "sqlite:///watcher.db"
