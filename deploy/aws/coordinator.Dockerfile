# The coordinator image: small, non-root, carrying the reviewed policy and
# network map that scheduled runs and change-triggered rescans read.
# Build from the repository root (deploy/aws/README.md, step 2):
#   docker build -f deploy/aws/coordinator.Dockerfile -t segscan-coordinator .

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml ./
COPY agent/ agent/
COPY coordinator/ coordinator/
COPY protocol/ protocol/
COPY deploy/ deploy/
# asyncpg is the driver behind SEGSCAN_DB_URL=postgresql+asyncpg://...
RUN pip wheel --no-cache-dir --wheel-dir /wheels . "asyncpg>=0.29"

FROM python:3.11-slim-bookworm
ARG POLICY=deploy/aws/founding/policy.yaml
ARG NETWORK=deploy/aws/founding/network.yaml
RUN groupadd --system --gid 10001 segscan \
 && useradd --system --uid 10001 --gid segscan --no-create-home \
      --shell /usr/sbin/nologin segscan
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels segscan asyncpg
COPY --chmod=0644 ${POLICY} /etc/segscan/policy.yaml
COPY --chmod=0644 ${NETWORK} /etc/segscan/network.yaml
# The only writable place (the task's root file system is read-only): evidence
# bundles before upload, and scratch files.  The task mounts its volume here;
# Fargate fills a volume from the image's VOLUME of the same path, owner and
# mode included, so the user below can write to it.
RUN install -d -o 10001 -g 10001 -m 0700 /var/lib/segscan /var/lib/segscan/tmp
VOLUME ["/var/lib/segscan"]
USER 10001:10001
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    SEGSCAN_STATE_DIR=/var/lib/segscan TMPDIR=/var/lib/segscan/tmp
EXPOSE 8470
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["coordinator", "healthcheck", "--url", "http://127.0.0.1:8470"]
ENTRYPOINT ["coordinator"]
CMD ["serve", "--listen", "0.0.0.0:8470"]
