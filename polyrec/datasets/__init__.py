"""Data sets and their download cache: the only part of the core that touches the file system or
the network (the way River and implicit keep downloads in ``datasets/``)."""
