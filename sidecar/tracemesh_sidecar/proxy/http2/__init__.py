"""HTTP/2 (h2c) on both sides of the proxy: a codec around the sans-IO `h2` library under the version-free stream."""
