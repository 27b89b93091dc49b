"""The one container image every component and the drift monitor run on."""

from driftloop import __version__

IMAGE_REPOSITORY = "ghcr.io/driftloop/driftloop"
PROJECT_IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"
