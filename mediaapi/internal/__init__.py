"""The media API's logic: ids, the repository, thumbnails, response headers, URL previews."""
