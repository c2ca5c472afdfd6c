"""The error every resnet_serve failure meant for the user derives from."""


class ResnetServeError(Exception):
    """A failure whose message tells the user what went wrong and what to do."""
