# pywharf: a private Python package index.
#   docker build -t pywharf .
#   docker run -p 8888:8888 -v pywharf-root:/pywharf-root pywharf
# With no arguments the container runs in environment mode: PYWHARF_COMMAND (default
# "server") and PYWHARF_COMMAND_<FLAG> configure it; see the README.

# 1. Build the wheel from the source tree.
FROM python:3.12-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir build==1.2.2
COPY pyproject.toml README.md ./
COPY pywharf_core ./pywharf_core
COPY backends ./backends
COPY workflows ./workflows
RUN python -m build --wheel --outdir /dist

# 2. Install it, with the S3 extra, into a virtual environment.
FROM python:3.12-slim AS install
COPY --from=build /dist /dist
RUN python -m venv /opt/pywharf \
    && /opt/pywharf/bin/pip install --no-cache-dir /dist/*.whl \
    && /opt/pywharf/bin/pip install --no-cache-dir "boto3>=1.35,<2"

# 3. The runtime: the virtual environment on a slim Python, as an unprivileged user.
FROM python:3.12-slim
RUN groupadd --system --gid 10001 pywharf \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/pywharf pywharf \
    && mkdir /pywharf-root \
    && chown 10001:10001 /pywharf-root
COPY --from=install /opt/pywharf /opt/pywharf
ENV PATH=/opt/pywharf/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONMALLOC=malloc \
    PYWHARF_COMMAND=server \
    PYWHARF_COMMAND_ROOT=/pywharf-root \
    PYWHARF_COMMAND_PORT=8888
USER 10001:10001
VOLUME ["/pywharf-root"]
EXPOSE 8888
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8888/healthz', timeout=4)"]
ENTRYPOINT ["pywharf"]
