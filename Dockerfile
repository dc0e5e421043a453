# The inferwatch worker image (docker-compose.yml builds it). The tests do not use it: no Docker
# engine runs where they do.
FROM python:3.11-slim
WORKDIR /app
# the worker's packages exactly as locked (versions and hashes; `make lock` refreshes the lock)
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY detectors ./detectors
COPY config ./config
COPY lab/samples ./lab/samples
# the anomaly detector's arithmetic is compiled by numba: once here, into a cache the worker
# reads (and may write) at every start
ENV NUMBA_CACHE_DIR=/var/cache/inferwatch-numba
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && useradd --system --uid 10001 inferwatch \
    && mkdir -p /var/lib/inferwatch && chown inferwatch /var/lib/inferwatch \
    && python -c 'from detectors.anomaly import compile_kernel; compile_kernel()' \
    && chown -R inferwatch "$NUMBA_CACHE_DIR"
USER inferwatch
ENV INFERWATCH_WORKER__STATE_DIR=/var/lib/inferwatch
EXPOSE 9108
ENTRYPOINT ["inferwatch"]
CMD ["worker", "--config", "/app/config/inferwatch.yaml"]
