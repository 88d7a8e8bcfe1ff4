"""The engine's images: references (``reference``), the content-addressed store
(``store``), safe layer unpacking (``unpack``), archives (``archive``: import, save, load)
and base images built on this host (``bootstrap``)."""
