"""The media API's logic: ids, the repository, thumbnails, URL previews."""
