"""The one container image every component, the serving runtime and the drift monitor run on.

Its name is one setting: ``DRIFTLOOP_IMAGE`` (or ``--image`` on ``driftloop compile | submit``), default
:data:`PROJECT_IMAGE`. The image bakes its own name in (``make image IMAGE=…`` sets ``DRIFTLOOP_IMAGE``
inside it), so pipelines the drift monitor submits from inside the cluster run on the same image.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from driftloop import __version__

IMAGE_REPOSITORY = "ghcr.io/driftloop/driftloop"
PROJECT_IMAGE = f"{IMAGE_REPOSITORY}:{__version__}"
IMAGE_ENV = "DRIFTLOOP_IMAGE"


def project_image(environ: Mapping[str, str] | None = None) -> str:
    """The image to run on: ``DRIFTLOOP_IMAGE`` when set, else the default for this package version."""
    env = os.environ if environ is None else environ
    return env.get(IMAGE_ENV) or PROJECT_IMAGE
