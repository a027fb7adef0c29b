"""The peer of the socket experiments on another host: ``iobench serve`` and its client.

``protocol`` frames the control connection, ``roles`` are what the peer does with a data
socket, ``server`` is ``iobench serve``, ``client`` is what experiments use (``--peer``).
"""
