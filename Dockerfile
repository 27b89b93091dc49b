# The one driftloop image: every KFP component, the KServe serving runtime and the drift monitor run on it.
# Build with `make image IMAGE=registry.example.com/team/driftloop:TAG` (default: driftloop.image.PROJECT_IMAGE).
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# libgomp: OpenMP runtime for XGBoost and scikit-learn.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin driftloop

WORKDIR /opt/driftloop
# The locked runtime dependencies, verified by hash; nothing unpinned is installed.
COPY requirements.lock ./
RUN pip install --no-deps --require-hashes -r requirements.lock

COPY pyproject.toml README.md ./
COPY src ./src
COPY components ./components
COPY pipelines ./pipelines
RUN pip install --no-deps --no-build-isolation .

ARG GIT_COMMIT=""
# The image knows its own name: pipelines the drift monitor submits from inside it run on it too.
ARG IMAGE=""
ENV DRIFTLOOP_GIT_COMMIT=${GIT_COMMIT} \
    DRIFTLOOP_IMAGE=${IMAGE}

USER 10001
WORKDIR /home/driftloop
CMD ["driftloop", "--help"]
