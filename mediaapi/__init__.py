"""The media repository: uploads, downloads, thumbnails, remote media cache, URL previews."""
