"""The media API: the content repository (uploads, downloads, thumbnails,
remote media fetched over federation and cached, URL previews).

    mediaapi = await open_mediaapi(config, userapi, federation=federationapi.internal)
    app = make_app("myelin", [..., mediaapi.blueprint])
    federationapi.media = mediaapi.local_media     # other servers download our media
    ...
    await mediaapi.close()

It consumes no log, so it has no ``run``. Bytes live in a ``MediaStore``
(``LocalDiskStore`` under ``<data_dir>/media`` unless another is given);
metadata and thumbnails in its own database.
"""

from __future__ import annotations

from pathlib import Path

from sanic import Blueprint

from common.config import Config
from common.storage import Database, database_url_for, open_database
from mediaapi.api import LocalMediaAPI
from mediaapi.internal.preview import UrlPreviewer
from mediaapi.internal.repository import MediaRepository, RemoteMediaFetcher
from mediaapi.routing import media as media_routes
from mediaapi.storage.database import MediaDatabase
from mediaapi.storage.store import LocalDiskStore, MediaStore
from userapi.api import AuthenticationAPI

COMPONENT = "mediaapi"


def media_store_root(data_dir: Path) -> Path:
    return data_dir / "media"


class MediaAPI:
    def __init__(self, config: Config, database: MediaDatabase, store: MediaStore, userapi: AuthenticationAPI,
                 federation: RemoteMediaFetcher | None = None) -> None:
        self.config = config
        self.database = database
        self.store = store
        self.repository = MediaRepository(config, database, store, federation)
        self.previewer = UrlPreviewer(config.media, self.repository)
        self.blueprint = Blueprint(COMPONENT)
        media_routes.register(self.blueprint, self.repository, userapi, self.previewer, config.media)

    @property
    def local_media(self) -> LocalMediaAPI:
        """What the federation API serves to other servers."""
        return self.repository

    async def close(self) -> None:
        await self.previewer.close()
        await self.database.close()


def build(config: Config, database: Database, userapi: AuthenticationAPI, *,
          federation: RemoteMediaFetcher | None = None, store: MediaStore | None = None) -> MediaAPI:
    return MediaAPI(config, MediaDatabase(database), store or LocalDiskStore(media_store_root(config.data_dir)),
                    userapi, federation)


async def open_mediaapi(config: Config, userapi: AuthenticationAPI, *,
                        federation: RemoteMediaFetcher | None = None,
                        store: MediaStore | None = None) -> MediaAPI:
    """Opens (and migrates) the media API's database and builds the component."""
    url = database_url_for(COMPONENT, postgres_url=config.postgres_url or None, data_dir=config.data_dir)
    return build(config, await open_database(url, COMPONENT), userapi, federation=federation, store=store)
